"""humo: HuMo human-centric video generation (text + reference images + audio) on a Wan2.1 DiT."""

__version__ = "0.1.0"

__all__ = ["HumoPipeline", "HumoDiT", "DiTConfig", "dit_preset", "__version__"]


def __getattr__(name: str):
    # Lazy: `import humo` must not import torch/transformers until something is used.
    if name == "HumoPipeline":
        from humo.pipeline import HumoPipeline

        return HumoPipeline
    if name == "HumoDiT":
        from humo.dit import HumoDiT

        return HumoDiT
    if name in ("DiTConfig", "dit_preset"):
        from humo import configs

        return getattr(configs, name)
    raise AttributeError(f"module 'humo' has no attribute {name!r}")

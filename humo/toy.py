"""The toy model family: the real classes (HumoDiT, AutoencoderKLWan, UMT5, Whisper) at tiny sizes.

`write_toy_weights(folder)` lays out a complete weights folder for the `toy` preset (random weights), which
`HumoPipeline.from_pretrained(folder, preset="toy")` loads exactly as it loads a trained one. The proving-ground
training replaces the random DiT (and VAE) with trained ones; the text and audio encoders stay frozen random
projections, which is all a world of a few hundred words and synthetic speech needs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from humo.configs import dit_preset

# Words the toy tokenizer knows besides the proving ground's own (prompts outside it map to <unk>).
_BASE_WORDS = (
    "a an the of with and in on at is are who while holding person man woman character talks talking speaks "
    "speaking says sings smiles looks camera front background scene video clip holds"
).split()


def toy_vocabulary() -> list[str]:
    """Every word of the proving ground's caption grammar plus common filler words (sorted, unique)."""
    from humo.proving_ground import world

    return sorted(set(_BASE_WORDS) | set(world.vocabulary()))


def toy_components(seed: int = 0, vae=None, **dit_overrides):
    """(dit, vae, text_encoder, audio_encoder) of the toy preset, randomly initialised and deterministic; `vae`
    (a WanVAE or a LinearCodec) stands in for the random toy VAE when given."""
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE
    from humo.dit import HumoDiT

    cfg = dit_preset("toy", **dit_overrides)
    text = TextEncoder.toy(toy_vocabulary(), text_len=cfg.text_len, dim=cfg.text_dim, seed=seed)
    audio = AudioEncoder.toy(seed=seed, d_model=cfg.audio_feat_dim)
    vae = WanVAE.toy(seed=seed) if vae is None else vae
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = HumoDiT(cfg).eval()
    return dit, vae, text, audio


def write_toy_weights(folder: str | Path, seed: int = 0, components=None) -> Path:
    """Write a complete `toy` weights folder: dit.safetensors, vae/, text/, whisper/."""
    from humo.checkpoint import save_dit

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit, vae, text, audio = components or toy_components(seed)
    save_dit(dit, folder / "dit.safetensors")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text")
    audio.save_pretrained(folder / "whisper")
    return folder


def assemble_weights(
    folder: str | Path,
    dit: str | Path | None = None,
    vae: str | Path | None = None,
    dit_dtype: str = "fp32",
    encoders: str | Path | None = None,
) -> Path:
    """A `toy` weights folder from trained parts: `dit` (a HumoDiT .safetensors, e.g. a stage-2 export), `vae`
    (a diffusers VAE folder from `humo train-vae`, or a linear codec folder from `humo fit-codec`) and `encoders`
    (a toy weights folder whose text/ and whisper/ are copied: pass the one `humo precompute` cached the training
    data with, so the model ships with the exact encoders it was trained on). Parts not given are the seeded toy
    ones. `dit_dtype` "bf16" stores the DiT at half the size (the toy layout loads it back as fp32). Written to a
    temporary folder beside `folder` and renamed, so `folder` is complete or absent."""
    import os
    import shutil
    import tempfile

    from humo.checkpoint import load_dit
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import load_vae_folder
    from humo.errors import HumoError

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        d, v, text, audio = toy_components(0, vae=None if vae is None else load_vae_folder(vae))
        if dit is not None:
            d = load_dit(dit)
        if dit_dtype not in ("fp32", "bf16"):
            raise ValueError(f"dit_dtype {dit_dtype!r}: use fp32 or bf16")
        if dit_dtype == "bf16":
            d = d.to(torch.bfloat16)
        if encoders is not None:
            text = TextEncoder.from_pretrained(Path(encoders) / "text")
            audio = AudioEncoder.from_pretrained(Path(encoders) / "whisper")
        if text.text_len != d.cfg.text_len or text.dim != d.cfg.text_dim:
            raise HumoError(
                f"text encoder (text_len {text.text_len}, dim {text.dim}) does not match the DiT "
                f"(text_len {d.cfg.text_len}, text_dim {d.cfg.text_dim})"
            )
        write_toy_weights(tmp, components=(d, v, text, audio))
        os.chmod(tmp, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> None:
    """``python -m humo.toy --out DIR [--dit FILE] [--vae DIR] [--encoders DIR]``: write a toy weights folder."""
    import argparse

    p = argparse.ArgumentParser(description="write a toy weights folder: dit.safetensors, vae/, text/, whisper/")
    p.add_argument("--out", required=True)
    p.add_argument("--dit", help="trained HumoDiT .safetensors (default: random toy DiT)")
    p.add_argument("--vae", help="trained VAE or fitted codec folder (default: random toy VAE)")
    p.add_argument("--dit-dtype", default="fp32", choices=["fp32", "bf16"], help="dtype the DiT is stored in")
    p.add_argument("--encoders", help="toy weights folder whose text/ and whisper/ to copy (default: seeded toy)")
    args = p.parse_args(argv)
    from humo.cli import quiet_libraries
    from humo.errors import HumoError

    quiet_libraries()  # transformers' "Writing model shards" bars stay out of the recipe's log

    try:
        print(assemble_weights(args.out, args.dit, args.vae, args.dit_dtype, args.encoders))
    except HumoError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()

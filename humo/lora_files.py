"""LoRA files users bring (a distillation LoRA for fewer steps, a style or identity LoRA), merged into the DiT.

Key formats read (each key is one tensor of one adapted Linear layer):

- peft / diffusers: ``<module>.lora_A.weight`` and ``<module>.lora_B.weight`` (``.lora_A.default.weight`` too),
  module names in our (official Wan) layout or diffusers' (``blocks.0.attn1.to_q``), optionally under
  ``transformer.``, ``diffusion_model.``, ``base_model.model.`` or ``model.``;
- kohya / ComfyUI: ``lora_unet_<module with '_' for '.'>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``, and
  ``diffusion_model.<module>.lora_down.weight`` / ``.lora_up.weight``;
- full deltas some Wan LoRAs carry: ``<module>.diff`` (weight) and ``<module>.diff_b`` (bias).

A layer's update is ``scale * (alpha / rank) * up @ down`` (alpha defaults to the rank), added to its weight in
float32 and cast back. Every key must land on a layer of the model: one that matches nothing is an error naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from humo.errors import HumoError, describe_keys

_PREFIXES = ("base_model.model.", "diffusion_model.", "transformer.", "model.")
_KINDS = {
    ".lora_A.default.weight": "down",
    ".lora_B.default.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".alpha": "alpha",
    ".diff_b": "diff_b",
    ".diff": "diff",
}


def parse_lora_arg(spec: str) -> tuple[str, float]:
    """``FILE[:SCALE]`` -> (file, scale); the scale defaults to 1."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def _module_name(raw: str, kohya: dict[str, str]) -> str:
    """A LoRA key's module part -> the model's module name (our layout)."""
    from humo.checkpoint import _FROM_DIFFUSERS, _rename

    if raw.startswith("lora_unet_"):
        flat = raw[len("lora_unet_") :]
        return kohya.get(flat, raw)
    for prefix in _PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
            break
    # the diffusers names map as parameter keys do: a module as its weight's key, a bare parameter (the blocks'
    # scale_shift_table, our modulation) as itself
    module = _rename(raw + ".weight", _FROM_DIFFUSERS)[: -len(".weight")]
    return module if module != raw else _rename(raw, _FROM_DIFFUSERS)


def read_lora(path: str | os.PathLike, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """{module name of `model`: {"down", "up", "alpha", "diff", "diff_b": tensor}} from a LoRA file (safetensors,
    or a weights-only torch file), with one-line errors for keys that match no layer of `model` (low-rank pairs
    need a Linear layer; full deltas any weight, or a bare parameter such as a block's modulation)."""
    from humo.checkpoint import read_state_dict

    p = Path(path)
    if not p.is_file():
        raise HumoError(f"--lora {p}: file not found")
    sd, _ = read_state_dict(p)
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    # full deltas may target any weight: a module's (norms, the patch embedding) or a bare parameter (modulation)
    weighted = {name for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), torch.Tensor)}
    weighted |= {name for name, _ in model.named_parameters()}
    kohya = {name.replace(".", "_"): name for name in weighted}
    out: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in sd.items():
        kind = next((k for k in _KINDS if key.endswith(k)), None)
        if kind is None:
            unknown.append(key)
            continue
        module = _module_name(key[: -len(kind)], kohya)
        if module not in (weighted if _KINDS[kind] in ("diff", "diff_b") else linears):
            unknown.append(key)
            continue
        out.setdefault(module, {})[_KINDS[kind]] = tensor
    if unknown:
        raise HumoError(f"--lora {p}: keys that match no layer of the DiT: {describe_keys(unknown)}")
    for module, parts in out.items():
        if ("down" in parts) != ("up" in parts):
            raise HumoError(f"--lora {p}: {module} has only one of its two LoRA matrices")
    if not out:
        raise HumoError(f"--lora {p}: no LoRA weights in it")
    return out


@torch.no_grad()
def apply_lora_file(model: nn.Module, path: str | os.PathLike, scale: float = 1.0) -> int:
    """Merge the LoRA at `path` into `model`'s weights with `scale`; returns the number of layers changed."""
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    lora = read_lora(path, model)
    for name, parts in lora.items():
        layer = modules.get(name)
        w = (
            layer.weight
            if layer is not None and isinstance(getattr(layer, "weight", None), torch.Tensor)
            else params[name]
        )
        delta = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        if "down" in parts:
            down, up = parts["down"].float().to(w.device), parts["up"].float().to(w.device)
            rank = down.shape[0]
            if up.shape[1] != rank or (up.shape[0], down.shape[1]) != tuple(w.shape):
                raise HumoError(
                    f"--lora {path}: {name}: up {tuple(up.shape)} @ down {tuple(down.shape)} does not fit the "
                    f"layer's weight {tuple(w.shape)}"
                )
            alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
            delta += (alpha / rank) * (up @ down)
        if "diff" in parts:
            if tuple(parts["diff"].shape) != tuple(w.shape):
                raise HumoError(f"--lora {path}: {name}.diff {tuple(parts['diff'].shape)} vs weight {tuple(w.shape)}")
            delta += parts["diff"].float().to(w.device)
        w.copy_((w.float() + scale * delta).to(w.dtype))
        if "diff_b" in parts:
            if getattr(layer, "bias", None) is None or tuple(parts["diff_b"].shape) != tuple(layer.bias.shape):
                raise HumoError(f"--lora {path}: {name}.diff_b does not fit the layer's bias")
            layer.bias.copy_((layer.bias.float() + scale * parts["diff_b"].float().to(w.device)).to(w.dtype))
    return len(lora)


def apply_lora_files(model: nn.Module, loras, log=None) -> None:
    """Merge each (file, scale) of `loras` in order."""
    for path, scale in loras:
        n = apply_lora_file(model, path, scale)
        if log is not None:
            log(f"lora    {path}: {n} layers, scale {scale:g}")

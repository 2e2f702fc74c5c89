"""One attention function with swappable backends.

Every attention in the DiT goes through `attention(q, k, v)`, so a backend (SDPA, flash-attn, and later a
sequence-parallel one) is chosen in one place without touching the blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # flash-attn is optional: used only on a GPU with half precision inputs.
    from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _flash_attn_func = None

_BACKEND = "auto"


def set_backend(name: str) -> None:
    """Choose "auto" (flash-attn when usable, else SDPA), "sdpa" or "flash"."""
    global _BACKEND
    if name not in ("auto", "sdpa", "flash"):
        raise ValueError(f"unknown attention backend {name!r}")
    if name == "flash" and _flash_attn_func is None:
        raise RuntimeError("flash-attn is not installed")
    _BACKEND = name


def flash_available(q: torch.Tensor) -> bool:
    return _flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention without mask.

    q: [B, Lq, H, D], k and v: [B, Lk, H, D] -> [B, Lq, H, D]
    """
    if _BACKEND == "flash" or (_BACKEND == "auto" and flash_available(q)):
        return _flash_attn_func(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)

"""Tiny configs and random weights shared by the tests (no downloads)."""

from __future__ import annotations

import torch

from humo.configs import dit_preset
from humo.dit import HumoDiT

TINY = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_dim=32, text_len=16, freq_dim=32)
TINY_AUDIO = dict(audio_feat_dim=8, audio_hidden=32, audio_tokens=16, audio_token_dim=48)


def tiny_cfg(preset: str, **overrides):
    extra = dict(TINY)
    if dit_preset(preset).audio:
        extra.update(TINY_AUDIO)
    extra.update(overrides)
    extra.setdefault("mask_head_blocks", min(dit_preset(preset).mask_head_blocks, extra["num_layers"]))
    return dit_preset(preset, **extra)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Fill every parameter with random values (norm weights near 1) so no path is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or ".norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


def tiny_model(preset: str, seed: int = 0, **overrides) -> HumoDiT:
    return randomize(HumoDiT(tiny_cfg(preset, **overrides)), seed).eval()


def dit_inputs(cfg, batch=2, frames=3, h=8, w=8, seed=1, audio=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.out_dim, frames, h, w, generator=g)
    t = torch.linspace(100, 900, batch)
    ctx = torch.randn(batch, 7, cfg.text_dim, generator=g)
    a = torch.randn(batch, frames, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g)
    y = torch.randn(batch, cfg.in_dim - cfg.out_dim, frames, h, w, generator=g) if cfg.in_dim != cfg.out_dim else None
    return x, t, ctx, (a if audio and cfg.audio else None), y

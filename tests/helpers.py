"""Tiny configs and random weights shared by the tests (no downloads)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from humo.configs import dit_preset
from humo.data.precompute import CACHE_VERSION, DEFAULT_FPS, DEFAULT_INDEX, ObjectStore, content_key
from humo.dit import HumoDiT
from humo.errors import atomic_path

TINY = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_dim=32, text_len=16, freq_dim=32)
TINY_AUDIO = dict(audio_feat_dim=8, audio_hidden=32, audio_tokens=16, audio_token_dim=48)


def tiny_train_config(cache, out, **kw):
    """A TrainConfig for a few fast steps of the tiny 1.7B-layout DiT (audio path, 2-block mask head) on `cache`."""
    from humo.training.config import TrainConfig

    base = dict(
        cache=str(cache),
        out=str(out),
        model="humo-1.7b",
        model_overrides={**TINY, **TINY_AUDIO, "mask_head_blocks": 2},
        steps=2,
        batch_size=2,
        log_every=1,
        checkpoint_every=10,
        precision="fp32",
        progress=False,
        tensorboard=False,
        lr=1e-3,
        ema_decay=0.5,
    )
    base.update(kw)
    return TrainConfig(**base)


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


def synthetic_cache(
    out: str | os.PathLike,
    *,
    samples: int = 8,
    latent: tuple[int, int, int, int] = (16, 2, 4, 4),
    text_dim: int = 32,
    text_len: int = 6,
    audio_window: tuple[int, int, int] | None = (8, 5, 8),
    with_refs: Sequence[bool] | None = None,
    with_audio: Sequence[bool] | None = None,
    with_mask: Sequence[bool] | None = None,
    with_pose: Sequence[bool] | bool = False,
    split: str = "train",
    seed: int = 0,
    index: str = DEFAULT_INDEX,
) -> Path:
    """Write a cache of random tensors with the exact layout `precompute` writes (no encoders needed).

    latent: [C, F, h, w] of every clip; with_refs / with_audio / with_mask: per sample (default all True), for
    incomplete data; with_pose: per sample, or for all (default none), pose keypoints of one person whose seen
    joints drift across the frame. The video latent of sample i is smooth in space (so a model can learn something)
    and the face mask is a box; everything is seeded. Returns the index path.
    """
    g = torch.Generator().manual_seed(seed)
    store = ObjectStore(out)
    c, f, h, w = latent

    def put(kind: str, tensor: torch.Tensor, *tag) -> str:
        key = content_key("synthetic", kind, seed, *tag)
        store.put(key, tensor.float(), {"kind": kind})
        return key

    if isinstance(with_pose, bool):
        with_pose = [with_pose] * samples
    frames = 4 * (f - 1) + 1
    entries = []
    for i in range(samples):
        base = torch.randn(c, 1, 1, 1, generator=g) + 0.3 * torch.randn(c, f, h, w, generator=g)
        refs = [put("reference", base[:, :1] + 0.1 * torch.randn(c, 1, h, w, generator=g), i)]
        audio = put("audio", torch.randn(f, *audio_window, generator=g), i) if audio_window else None
        m = torch.zeros(f, h, w)
        m[:, h // 4 : h // 4 + max(1, h // 2), w // 4 : w // 4 + max(1, w // 2)] = 1.0
        entries.append(
            {
                "id": f"s{i:04d}",
                "split": split,
                "caption": f"synthetic sample {i}",
                "fps": DEFAULT_FPS,
                "shape": [c, f, h, w],
                "video": put("video", base, i),
                "text": put("text", torch.randn(text_len, text_dim, generator=g), i),
                "references": refs if (with_refs is None or with_refs[i]) else [],
                "audio": audio if (with_audio is None or with_audio[i]) else None,
                "mask": put("mask", m, i) if (with_mask is None or with_mask[i]) else None,
                "pose": put("pose", _pose_points(g, frames), i) if with_pose[i] else None,
                "zero_video": put("zero_video", torch.zeros(c, f, h, w), f, h, w),
            }
        )
    null = {
        "negative": put("text", torch.randn(text_len + 2, text_dim, generator=g), "negative"),
        "empty": put("text", torch.zeros(1, text_dim), "empty"),
    }
    dims: dict[str, Any] = {"latent_channels": c, "text_dim": text_dim}
    if audio_window:
        dims["audio_window"] = list(audio_window)
    idx = {
        "version": CACHE_VERSION,
        "encoders": {"synthetic": str(seed)},
        "settings": {},
        "negative_prompt": "",
        "null_text": null,
        "dims": dims,
        "samples": entries,
    }
    path = Path(out) / index
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(idx, indent=1))
    return path


def _pose_points(g: torch.Generator, frames: int) -> torch.Tensor:
    """[frames, 1, 18, 3] normalised keypoints: 6 seen joints moving linearly across the frame, the rest unseen."""
    start, end = torch.rand(2, 6, 2, generator=g) * 0.8 + 0.1
    w = torch.linspace(0, 1, frames).view(-1, 1, 1)
    pts = torch.zeros(frames, 1, 18, 3)
    pts[:, 0, :6, :2] = start + (end - start) * w
    pts[:, 0, :6, 2] = 1.0
    return pts

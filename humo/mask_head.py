"""Focus-by-predicting: a face-mask head over the last blocks, trained with a size-aware BCE.

The head reads the hidden states right after the audio cross-attention of each of the last K blocks, predicts a
mask logit per latent pixel, and the K predictions are averaged. Supervising it with the face region teaches the
audio path where the face is, without any hard mask in the attention. The release ships no such weights; our
checkpoints carry them as `mask_head.*`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from humo.layers import LayerNorm


class MaskHead(nn.Module):
    """One LayerNorm + Linear per tapped block; logits for every pixel of a patch."""

    def __init__(self, dim: int, num_blocks: int, patch: tuple[int, int, int], eps: float = 1e-6):
        super().__init__()
        self.patch = patch
        self.heads = nn.ModuleList(
            nn.Sequential(LayerNorm(dim, eps, elementwise_affine=True), nn.Linear(dim, math.prod(patch)))
            for _ in range(num_blocks)
        )

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int, int]) -> torch.Tensor:
        """features: K x [B, L, dim] with L = f*h*w tokens -> logits [B, f*pt, h*ph, w*pw] (the latent grid)"""
        return self.to_grid(self.token_logits(features), grid)

    def token_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: K x [B, L, dim] -> per-token logits [B, L, pt*ph*pw] (fp32), the mean of the K heads'."""
        return torch.stack([head(x).float() for head, x in zip(self.heads, features)]).mean(0)

    def to_grid(self, logits: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Per-token logits [B, f*h*w, pt*ph*pw] -> [B, f*pt, h*ph, w*pw] (the latent grid)"""
        f, h, w = grid
        pt, ph, pw = self.patch
        logits = logits.reshape(logits.shape[0], f, h, w, pt, ph, pw)
        return logits.permute(0, 1, 4, 2, 5, 3, 6).reshape(logits.shape[0], f * pt, h * ph, w * pw)


def mask_to_latent_grid(mask: torch.Tensor, latent_hw: tuple[int, int], temporal_stride: int = 4) -> torch.Tensor:
    """Resize a per-video-frame face mask to the latent grid the head predicts on.

    Latent frame 0 covers video frame 0; latent frame i >= 1 covers video frames 4i-3 .. 4i (the causal VAE's
    grouping). A latent pixel's target is the fraction of face inside it (area average, max over its frames).
    mask: [B, T, H, W] (T = 4k+1) -> [B, 1 + (T-1)//4, h, w] in [0, 1]
    """
    m = mask.float()
    first, rest = m[:, :1], m[:, 1:]
    if rest.shape[1]:
        rest = rest.unflatten(1, (-1, temporal_stride)).amax(2)
    m = torch.cat([first, rest], dim=1)
    return F.adaptive_avg_pool2d(m, latent_hw)


def size_aware_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE weighted per frame by h*w / sum(target), so small faces count as much as large ones.

    logits, target: [B, F, h, w] (target in [0, 1]); frames without a face get weight 1 -> scalar
    """
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").mean((-2, -1))
    area = target.float().sum((-2, -1))
    hw = target.shape[-2] * target.shape[-1]
    weight = torch.where(area > 0, hw / area.clamp_min(1e-6), torch.ones_like(area))
    return (weight * bce).mean()

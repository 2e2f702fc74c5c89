"""Small layers shared by the DiT's attentions: norms computed in fp32 and the q/k/v/o attention module.

Parameter names follow the official Wan2.1 layout (`q`, `k`, `v`, `o`, `norm_q`, `norm_k`, `weight`, `bias`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from humo import sequence_parallel
from humo.attention import attention


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in fp32 (bf16 variance is too coarse), scaled by `weight`."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (Wan's `WanLayerNorm`)."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False):
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


def rope_apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of each head by the precomputed angles.

    x: [B, L, H, D]; cos, sin: [L, 1, D/2] (fp32) -> [B, L, H, D] in x's dtype
    """
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class Attention(nn.Module):
    """Multi-head attention with q/k RMSNorm over the whole width (Wan's layout).

    Used as self-attention (RoPE), text cross-attention and, with `kv_dim`, HuMo's audio cross-attention.
    """

    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        kv_dim = dim if kv_dim is None else kv_dim
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """x: [B, L, dim], context: [B, Lc, kv_dim] or None (self) -> q [B, L, H, D], k, v [B, Lc, H, D]"""
        return (self.project_q(x), *self.project_kv(x if context is None else context))

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim] -> normed queries [B, L, H, D]"""
        return self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context: [B, Lc, kv_dim] -> normed keys and values [B, Lc, H, D]"""
        k = self.norm_k(self.k(context)).unflatten(-1, (self.num_heads, -1))
        return k, self.v(context).unflatten(-1, (self.num_heads, -1))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        shard: sequence_parallel.TokenShard | None = None,
    ) -> torch.Tensor:
        """x: [B, L, dim]; context: [B, Lc, kv_dim] (None = self-attention); rope: (cos, sin) -> [B, L, dim].
        shard: self-attention over a sequence split across ranks, x being this rank's slice [B, size, dim] (rope
        the slice's rows of the global table; `humo.sequence_parallel`)."""
        q, k, v = self.project(x, context)
        if rope is not None:
            q, k = rope_apply(q, *rope), rope_apply(k, *rope)
        if shard is not None:
            return self.o(sequence_parallel.self_attention(q, k, v, shard).flatten(2))
        return self.o(attention(q, k, v).flatten(2))

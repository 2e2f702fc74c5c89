"""HuMo's audio path: the projector from Whisper windows to audio tokens, and the per-block audio cross-attention.

Each latent frame gets its own window of 8 video frames x 5 Whisper hidden-state groups, projected to 16 tokens;
in every block, the H*W tokens of latent frame f attend only to the 16 audio tokens of frame f (no RoPE, no mask).
Reference frames carry all-zero windows. With the sequence split across ranks (`humo.sequence_parallel`), a rank's
slice of tokens starts mid-frame in general; its first token's global index tells each token's frame.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from humo.attention import attention
from humo.layers import Attention, LayerNorm
from humo.sequence_parallel import TokenShard


class _Layer(nn.Module):
    """Holds a layer under the name `layer`: the release's keys are `audio_proj_glob_N.layer.*`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class AudioProjector(nn.Module):
    """Whisper windows -> audio tokens per latent frame.

    [B, F, window, groups, C] -> flatten -> Linear-ReLU-Linear-ReLU-Linear -> [B, F, tokens, token_dim] -> LayerNorm
    """

    def __init__(self, in_dim: int, hidden: int = 512, tokens: int = 16, token_dim: int = 1536):
        super().__init__()
        self.tokens, self.token_dim = tokens, token_dim
        self.audio_proj_glob_1 = _Layer(nn.Linear(in_dim, hidden))
        self.audio_proj_glob_2 = _Layer(nn.Linear(hidden, hidden))
        self.audio_proj_glob_3 = _Layer(nn.Linear(hidden, tokens * token_dim))
        self.audio_proj_glob_norm = _Layer(nn.LayerNorm(token_dim))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows: [B, F, window, groups, C] -> tokens [B, F, tokens, token_dim]"""
        x = windows.flatten(2).to(self.audio_proj_glob_1.layer.weight.dtype)
        x = torch.relu(self.audio_proj_glob_1(x))
        x = torch.relu(self.audio_proj_glob_2(x))
        x = self.audio_proj_glob_3(x).unflatten(-1, (self.tokens, self.token_dim))
        return self.audio_proj_glob_norm(x)


class AudioCrossAttention(Attention):
    """Cross-attention from each latent frame's H*W video tokens to that frame's own audio tokens."""

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        audio_tokens: torch.Tensor,
        weights: torch.Tensor | None = None,
        shard: TokenShard | None = None,
    ) -> torch.Tensor:
        """x: [B, F*H*W, dim]; audio_tokens: [B, F, T, token_dim] -> [B, F*H*W, dim].

        Local injection (InterActHuman, `humo.person_masks`): audio_tokens [B, K, F, T, token_dim] hold K audios
        (the muted one and each person's) and weights [B, K, F*H*W] how much of each a token takes (summing to 1);
        the K attentions share the queries, and since the weights sum to 1 the blend can precede the output layer.
        shard: x (and weights) are this rank's slice of the tokens, [B, size, dim] (`humo.sequence_parallel`).
        """
        q = self.project_q(x)
        if weights is None:
            return self.o(self._attend(q, audio_tokens, shard))
        out = 0
        for k in range(audio_tokens.shape[1]):
            out = out + weights[:, k, :, None].to(q.dtype) * self._attend(q, audio_tokens[:, k], shard)
        return self.o(out)

    def _attend(self, q: torch.Tensor, audio_tokens: torch.Tensor, shard: TokenShard | None = None) -> torch.Tensor:
        """q: [B, F*H*W, heads, d] (normed); audio_tokens: [B, F, T, token_dim] -> [B, F*H*W, dim] before `o`.
        With a shard, q is this rank's slice [B, size, heads, d] -> [B, size, dim] (zeros on the padding)."""
        if shard is not None:
            return self._attend_slice(q, audio_tokens, shard)
        b, n_frames, n_tok = audio_tokens.shape[:3]
        k, v = self.project_kv(audio_tokens.flatten(1, 2))
        # Fold frames into the batch: frame f's queries only ever see frame f's keys.
        q = q.reshape(b * n_frames, -1, *q.shape[2:])
        k = k.reshape(b * n_frames, n_tok, *k.shape[2:])
        v = v.reshape(b * n_frames, n_tok, *v.shape[2:])
        return attention(q, k, v).reshape(b, -1, q.shape[2] * q.shape[3])

    def _attend_slice(self, q: torch.Tensor, audio_tokens: torch.Tensor, shard: TokenShard) -> torch.Tensor:
        """`_attend` on tokens shard.start .. of the F*H*W: they are placed in the whole frames they touch
        (frames f0 .. f1 - 1, zeros around them), which attend to their own audio as unsplit frames do."""
        b, size, heads, d = q.shape
        hw = shard.tokens // audio_tokens.shape[1]
        n = max(0, min(size, shard.tokens - shard.start))  # the real tokens; the rest is padding
        out = q.new_zeros(b, size, heads * d)
        if not n:
            return out
        f0, f1 = shard.start // hw, -(-(shard.start + n) // hw)
        offset = shard.start - f0 * hw
        frames = q.new_zeros(b, (f1 - f0) * hw, heads, d)
        frames[:, offset : offset + n] = q[:, :n]
        out[:, :n] = self._attend(frames, audio_tokens[:, f0:f1])[:, offset : offset + n]
        return out


class AudioBranch(nn.Module):
    """`x + audio_cross_attn(norm1_audio(x), audio_tokens)`: no gate, no timestep modulation (as released).

    Attribute names match the release's `audio_cross_attn_wrapper` keys.
    """

    def __init__(self, dim: int, num_heads: int, token_dim: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.norm1_audio = LayerNorm(dim, eps, elementwise_affine=True)
        self.audio_cross_attn = AudioCrossAttention(dim, num_heads, kv_dim=token_dim, qk_norm=qk_norm, eps=eps)

    def forward(
        self,
        x: torch.Tensor,
        audio_tokens: torch.Tensor,
        weights: torch.Tensor | None = None,
        shard: TokenShard | None = None,
    ) -> torch.Tensor:
        """x: [B, F*H*W, dim]; audio_tokens: [B, F, T, token_dim], or [B, K, F, T, token_dim] with per-token blend
        weights [B, K, F*H*W] (local injection, see `AudioCrossAttention`) -> [B, F*H*W, dim]; with a shard, x and
        weights hold this rank's slice of the tokens (`humo.sequence_parallel`)."""
        return x + self.audio_cross_attn(self.norm1_audio(x), audio_tokens, weights, shard)

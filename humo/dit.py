"""The HuMo DiT: Wan2.1's video diffusion transformer plus HuMo's audio path and reference frames.

Read top to bottom: functional helpers (time embedding, RoPE tables), the block, the head, the model.
Parameter names follow the official Wan2.1 / HuMo checkpoints so released weights load strictly.

Shapes: B batch, C latent channels, F latent frames (video frames then reference frames), H, W latent height and
width, L = F*H*W/4 tokens (patch 1x2x2), D model width.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn as nn
import torch.utils.checkpoint

from humo.audio_path import AudioBranch, AudioProjector
from humo.configs import DiTConfig
from humo.layers import Attention, LayerNorm
from humo.mask_head import MaskHead
from humo.person_masks import PersonMaskPredictor, local_audio_weights
from humo.pose_guider import PoseGuider
from humo.sequence_parallel import SequenceParallel, TokenShard, gather, split


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding, in float64: [cos | sin] of t * 10000^(-i/half). t: [B] -> [B, dim]"""
    half = dim // 2
    t = t.double()
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Head dims given to (time, height, width): d - 4*(d//6), 2*(d//6), 2*(d//6)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


@lru_cache(maxsize=32)
def _rope_table(
    head_dim: int, grid: tuple[int, int, int], theta: float, device: torch.device, times: tuple[int, ...] | None
):
    """cos/sin for every token of an (F, H, W) grid: each [L, 1, head_dim/2] in fp32. Cached per grid.
    `times`: each latent frame's time index (None: 0 .. F-1)."""
    parts = []
    for axis, (size, d) in enumerate(zip(grid, rope_split(head_dim))):
        inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)
        if axis == 0 and times is not None:
            pos = torch.tensor(times, dtype=torch.float64, device=device)
        else:
            pos = torch.arange(size, dtype=torch.float64, device=device)
        parts.append(torch.outer(pos, inv))
    f, h, w = grid
    angles = torch.cat(
        [
            parts[0][:, None, None].expand(f, h, w, -1),
            parts[1][None, :, None].expand(f, h, w, -1),
            parts[2][None, None, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, -1)
    return torch.cos(angles).float(), torch.sin(angles).float()


def rope_table(
    head_dim: int, grid: tuple[int, int, int], theta: float, device: torch.device, times: tuple[int, ...] | None = None
):
    """Positions are the token's (frame, row, column). By default the frames are numbered in order, so reference
    frames continue the time index after the video; `times` gives each latent frame's index instead (e.g. 0 for
    reference frames, OmniHuman-1's choice: `Conditions.frame_times`)."""
    if times is not None and len(times) != grid[0]:
        raise ValueError(f"{len(times)} frame times for {grid[0]} latent frames")
    times = None if times is None else tuple(int(t) for t in times)
    return _rope_table(head_dim, tuple(int(g) for g in grid), float(theta), torch.device(device), times)


class Block(nn.Module):
    """Self-attention (RoPE) -> text cross-attention -> [audio cross-attention] -> FFN, with 6-way modulation."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = LayerNorm(d, cfg.eps)
        self.self_attn = Attention(d, cfg.num_heads, qk_norm=cfg.qk_norm, eps=cfg.eps)
        self.norm3 = LayerNorm(d, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = Attention(d, cfg.num_heads, qk_norm=cfg.qk_norm, eps=cfg.eps)
        self.norm2 = LayerNorm(d, cfg.eps)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d**0.5)
        if cfg.audio:
            self.audio_cross_attn_wrapper = AudioBranch(d, cfg.num_heads, cfg.audio_token_dim, cfg.qk_norm, cfg.eps)

    def forward(self, x, e, context, rope, audio_tokens=None, tap: bool = False, audio_weights=None, shard=None):
        """x: [B, L, D]; e: [B, 6, D] fp32 time projection; context: [B, Lt, D]; rope: (cos, sin);
        audio_tokens: [B, F, T, token_dim] or None; with audio_weights [B, K, L] (local injection, InterActHuman):
        [B, K, F, T, token_dim] -> x: [B, L, D]
        (with tap=True: (x, the hidden states right after the audio cross-attention), for the mask heads)
        shard: x, rope and audio_weights hold this rank's slice of the L tokens (`humo.sequence_parallel`)"""
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.float() + e).unbind(1)
        h = self.modulated_input(x, e)
        x = x + (self.self_attn(h.type_as(x), rope=rope, shard=shard).float() * gate1[:, None]).type_as(x)
        x = x + self.cross_attn(self.norm3(x), context)
        if audio_tokens is not None:
            x = self.audio_cross_attn_wrapper(x, audio_tokens, audio_weights, shard)
        features = x
        h = self.norm2(x).float() * (1 + scale2[:, None]) + shift2[:, None]
        x = x + (self.ffn(h.type_as(x)).float() * gate2[:, None]).type_as(x)
        return (x, features) if tap else x

    def modulated_input(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; e: [B, 6, D] -> the self-attention's input, normed and modulated by the timestep [B, L, D]
        fp32 (what step caching compares between steps: it moves with both the latents and the timestep)."""
        shift1, scale1 = (self.modulation[:, :2].float() + e[:, :2]).unbind(1)
        return self.norm1(x).float() * (1 + scale1[:, None]) + shift1[:, None]


class Head(nn.Module):
    """LayerNorm (no affine) + 2-way modulation + Linear to out_dim * prod(patch)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; e: [B, D] fp32 time embedding -> [B, L, out_dim * prod(patch)]"""
        shift, scale = (self.modulation.float() + e[:, None]).unbind(1)
        h = self.norm(x).float() * (1 + scale[:, None]) + shift[:, None]
        return self.head(h.type_as(x))


# The velocity of a sample prediction divides by sigma; below this the division would amplify the x0 error without
# bound (the clip of Li & He 2025). Only the last sampler steps ever see smaller sigmas.
MIN_SIGMA = 0.05


def sample_to_velocity(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x, x0: [B, C, F, H, W] noisy input and predicted clean latent; t: [B] in [0, 1000] -> velocity, x0's dtype."""
    sigma = (t.float() / 1000).clamp_min(MIN_SIGMA).view(-1, *([1] * (x.dim() - 1)))
    return ((x.float() - x0.float()) / sigma).to(x0.dtype)


@dataclass
class Embedded:
    """HumoDiT.embed's output: what every block reads besides the token stream. Tensors have the batch first
    (rope has none), so `rows(index)` gives the same for a subset of the batch."""

    tokens: torch.Tensor  # [B, L, D] patch tokens
    grid: tuple[int, int, int]
    noisy: torch.Tensor  # [B, out_dim, F, H, W] the noisy latents (sample prediction needs them)
    t: torch.Tensor  # [B]
    e: torch.Tensor  # [B, D] fp32 time embedding
    e6: torch.Tensor  # [B, 6, D] fp32 time projection
    context: torch.Tensor  # [B, text_len, D]
    rope: tuple[torch.Tensor, torch.Tensor]
    audio_tokens: torch.Tensor | None  # [B, F, T, token_dim], or [B, K, F, T, token_dim] with audio_weights
    audio_weights: torch.Tensor | None = None  # [B, K, L] local injection's blend per token (humo.person_masks)
    ref_frames: tuple[int, ...] | None = None  # each person's reference frame, for the mask predictor
    # Sequence parallel: this rank's slice of the tokens (`tokens` and `audio_weights` hold only it; rope is the
    # whole table, `token_rope` the slice's rows). None: one process.
    shard: TokenShard | None = None

    @property
    def token_rope(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoPE table of the tokens in the stream: [L or size, 1, head_dim/2] each (global positions)."""
        if self.shard is None:
            return self.rope
        return split(self.rope[0], self.shard, dim=0), split(self.rope[1], self.shard, dim=0)

    @property
    def masked_frames(self) -> int:
        """The latent frames the person masks cover: the motion and generated frames, before the references."""
        return min(self.ref_frames) if self.ref_frames else 0

    def rows(self, index: torch.Tensor) -> Embedded:
        """The inputs of the batch rows `index` (a LongTensor)."""
        pick = lambda v: v if v is None else v.index_select(0, index)  # noqa: E731
        return dataclasses.replace(
            self,
            tokens=pick(self.tokens),
            noisy=pick(self.noisy),
            t=pick(self.t),
            e=pick(self.e),
            e6=pick(self.e6),
            context=pick(self.context),
            audio_tokens=pick(self.audio_tokens),
            audio_weights=pick(self.audio_weights),
        )


class HumoDiT(nn.Module):
    """Wan2.1 DiT with HuMo's audio cross-attention and references on the time axis.

    forward(x, t, context, audio=None, y=None, return_mask=False, frame_times=None, pose=None, pose_start=0,
            persons=None, return_persons=False, sequence_parallel=None):
      x:       [B, out_dim, F, H, W] noisy latents, reference frames last
      t:       [B] timesteps in [0, 1000]
      context: [B, Lt, text_dim] text embeddings, zero beyond the prompt; padded with zeros to text_len as Wan does
      audio:   [B, F, window, groups, C] Whisper windows per latent frame (zeros on reference frames) or None,
               which skips the audio branch entirely (stage-1 training, or a model without audio)
      y:       [B, in_dim - out_dim, F, H, W] the 17B channel condition (mask ++ condition latent), else None
      frame_times: each latent frame's RoPE time index (None: 0 .. F-1; see `rope_table`)
      pose:    [B or 1, J, 1 + 4(Fv-1), s*H, s*W] pose heatmaps of the Fv generated frames (cfg.pose_scale = s), whose
               features go to latent frames pose_start .. pose_start + Fv - 1 (the others get none), or None, which
               skips the pose guider (needs cfg.pose_channels > 0; see `humo.pose_guider`)
      persons: several people's audio and masks (`humo.person_masks.PersonAudio`; InterActHuman): with masks,
               each person's audio is injected where their mask is; without, `audio` (the mix) everywhere
      sequence_parallel: this process's place in a group that splits the blocks' tokens (Ulysses,
               `humo.sequence_parallel`); every rank passes the same inputs and gets the same outputs
    returns [B, out_dim, F, H, W] velocities, and with return_mask=True also mask logits [B, F, H, W] (None
    without a head); with return_persons=True (velocities, mask logits or None, per-person mask logits
    [B, P, Fm, H, W] or None without a predictor or persons). With cfg.prediction == "sample" the head
    predicts x0 and the velocity is (x - x0) / max(sigma, MIN_SIGMA), sigma = t / 1000, as x = (1 - sigma) x0 +
    sigma n.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=cfg.patch, stride=cfg.patch)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        if cfg.audio:
            self.audio_proj = AudioProjector(
                cfg.audio_window_dim, cfg.audio_hidden, cfg.audio_tokens, cfg.audio_token_dim
            )
        if cfg.mask_head_blocks:
            self.mask_head = MaskHead(d, cfg.mask_head_blocks, cfg.patch, cfg.eps)
        if cfg.pose_channels:  # built last, so the other modules' random initialisation is as without it
            self.pose_guider = PoseGuider(cfg)
        if cfg.person_mask_blocks:  # after the pose guider, so older modules initialise as before
            self.person_masks = PersonMaskPredictor(
                d, cfg.person_mask_blocks, cfg.patch, cfg.head_dim, cfg.person_mask_dim or d, cfg.eps
            )
        self.gradient_checkpointing = False

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    def patchify(self, x: torch.Tensor, conv: nn.Conv3d | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """x: [B, C, F, H, W] -> tokens [B, L, D], grid (F/pt, H/ph, W/pw), through `conv` (default the patch
        embedding; the pose guider has its own).

        The Conv3d with stride = kernel is a matmul over non-overlapping patches; as a Linear it runs faster on CPU.
        """
        conv = self.patch_embedding if conv is None else conv
        b, c, f, h, w = x.shape
        pt, ph, pw = self.cfg.patch
        grid = (f // pt, h // ph, w // pw)
        x = x.reshape(b, c, grid[0], pt, grid[1], ph, grid[2], pw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, math.prod(grid), c * pt * ph * pw)
        weight = conv.weight.flatten(1)
        return nn.functional.linear(x.to(weight.dtype), weight, conv.bias), grid

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """x: [B, L, out_dim * prod(patch)] -> [B, out_dim, F, H, W]"""
        b = x.shape[0]
        f, h, w = grid
        pt, ph, pw = self.cfg.patch
        x = x.reshape(b, f, h, w, pt, ph, pw, self.cfg.out_dim)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, self.cfg.out_dim, f * pt, h * ph, w * pw)

    def embed_context(self, context: torch.Tensor) -> torch.Tensor:
        """context: [B, Lt, text_dim] -> [B, text_len, D] (zero-padded to text_len first, as in Wan)."""
        pad = self.cfg.text_len - context.shape[1]
        if pad > 0:
            context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], dim=1)
        return self.text_embedding(context.to(self.dtype))

    def forward(
        self,
        x,
        t,
        context,
        audio=None,
        y=None,
        return_mask: bool = False,
        frame_times=None,
        pose=None,
        pose_start=0,
        persons=None,
        return_persons: bool = False,
        sequence_parallel: SequenceParallel | None = None,
    ):
        emb = self.embed(x, t, context, audio, y, frame_times, pose, pose_start, persons, sequence_parallel)
        tokens, tapped = self.run_blocks(emb, emb.tokens, return_mask, return_persons)
        return self.finish(emb, tokens, tapped, return_mask, return_persons)

    def embed(
        self,
        x,
        t,
        context,
        audio=None,
        y=None,
        frame_times=None,
        pose=None,
        pose_start=0,
        persons=None,
        sequence_parallel: SequenceParallel | None = None,
    ) -> Embedded:
        """Everything the blocks read, from forward's inputs: patch tokens (with the pose features'), time
        modulation, text and audio tokens, RoPE table (the three parts of forward are separate so that step caching
        can skip the middle one). With `sequence_parallel`, the tokens (and local audio weights) are this rank's
        slice of them."""
        cfg = self.cfg
        noisy = x
        if y is not None:
            x = torch.cat([x, y.to(x)], dim=1)
        tokens, grid = self.patchify(x)
        if pose is not None:
            if not cfg.pose_channels:
                raise ValueError(f"DiT {cfg.name} has no pose guider (pose_channels 0) but was given a pose")
            guider = self.pose_guider
            feats = guider.on_time_axis(pose, x.shape[2], pose_start)
            tokens = tokens + self.patchify(feats, guider.patch_embedding)[0].to(tokens.dtype)
        # Time conditioning stays fp32: modulation of a bf16 stream by bf16 scales loses the small timestep signal.
        e = self.time_embedding(sinusoidal_embedding(cfg.freq_dim, t).to(self.dtype)).float()
        e6 = self.time_projection(e.to(self.dtype)).float().unflatten(1, (6, cfg.dim))
        audio_tokens, audio_weights = self.embed_audio(audio, persons, x.shape[0], x.shape[2])
        shard = None
        if sequence_parallel is not None:
            shard = sequence_parallel.shard(tokens.shape[1])
            tokens = split(tokens, shard)
            audio_weights = None if audio_weights is None else split(audio_weights, shard, dim=2)
        return Embedded(
            tokens=tokens.to(self.dtype),
            grid=grid,
            noisy=noisy,
            t=t,
            e=e,
            e6=e6,
            context=self.embed_context(context),
            rope=rope_table(cfg.head_dim, grid, cfg.rope_theta, tokens.device, frame_times),
            audio_tokens=audio_tokens,
            audio_weights=audio_weights,
            ref_frames=None if persons is None else persons.ref_frames,
            shard=shard,
        )

    def embed_audio(self, audio, persons, batch: int, frames: int):
        """Audio tokens of every row, and with local injection their blend weights per token:
        (None, None) without audio; ([B, F, T, token_dim], None) for one audio everywhere; with persons whose masks
        are given, ([B, 1 + P, F, T, token_dim], [B, 1 + P, L]) for the muted audio and each person's. A row whose
        audio is dropped has zero windows everywhere, so every blend gives it the muted audio, as without persons."""
        cfg = self.cfg
        if audio is None or not cfg.audio:
            return None, None
        if persons is None or persons.masks is None:
            return self.audio_proj(audio), None
        own = persons.windows.to(audio).expand(batch, *persons.windows.shape[1:])
        stacked = torch.cat([torch.zeros_like(audio)[:, None], own], dim=1)  # [B, 1 + P, F, ...]
        tokens = self.audio_proj(stacked.flatten(0, 1)).unflatten(0, (batch, -1))
        masks = persons.masks.expand(batch, *persons.masks.shape[1:])
        local = local_audio_weights(masks, cfg.patch, frames)  # [B, 1 + P, L]: muted, then each person
        return tokens, local

    def tapped_blocks(self, emb: Embedded, return_mask: bool, return_persons: bool) -> int:
        """How many of the last blocks the wanted mask heads read (the face head, the person mask predictor)."""
        cfg = self.cfg
        face = cfg.mask_head_blocks if return_mask else 0
        persons = cfg.person_mask_blocks if (return_persons and emb.ref_frames) else 0
        return max(face, persons)

    def run_blocks(self, emb: Embedded, tokens: torch.Tensor, return_mask: bool = False, return_persons=False):
        """The blocks on `tokens` [B, L, D] (emb's, or a subset of its rows with emb sliced alike) -> (tokens,
        the mask heads' tapped features: a list over the last tapped blocks, empty when no head is wanted)."""
        cfg = self.cfg
        tapped = []
        first_tap = cfg.num_layers - self.tapped_blocks(emb, return_mask, return_persons)
        rope = emb.token_rope
        for i, block in enumerate(self.blocks):
            # The mask heads read the hidden states right after the audio cross-attention of the last blocks,
            # returned by the block itself: no hooks, no second forward pass.
            tap = i >= first_tap
            args = (tokens, emb.e6, emb.context, rope, emb.audio_tokens, tap, emb.audio_weights, emb.shard)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                result = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
            else:
                result = block(*args)
            if tap:
                tokens, features = result
                tapped.append(features)
            else:
                tokens = result
        return tokens, tapped

    def finish(self, emb: Embedded, tokens: torch.Tensor, tapped=(), return_mask: bool = False, return_persons=False):
        """The head on the blocks' output: velocities [B, out_dim, F, H, W] (and the mask logits, see forward); with
        sequence parallel, the head's per-token output of every rank gathered first."""
        out = self.head(tokens, emb.e)
        if emb.shard is not None:
            out = gather(out, emb.shard)
        out = self.unpatchify(out, emb.grid)
        if self.cfg.prediction == "sample":
            out = sample_to_velocity(emb.noisy, out, emb.t)
        if not (return_mask or return_persons):
            return out
        face, persons = self.mask_logits(emb, list(tapped), return_mask, return_persons)
        return (out, face, persons) if return_persons else (out, face)

    def mask_logits(self, emb: Embedded, tapped: list, return_mask: bool = True, return_persons: bool = False):
        """The mask heads on the tapped features (`run_blocks`): (face logits [B, F, H, W] or None, per-person logits
        [B, P, Fm, H, W] or None), each None when not wanted or the model has no such head. With sequence parallel
        the face head's per-token logits are gathered, and the person predictor (whose video tokens attend to the
        reference frames' tokens) reads the gathered features."""
        cfg = self.cfg
        face = persons = None
        if return_mask and cfg.mask_head_blocks and tapped:
            logits = self.mask_head.token_logits(tapped[len(tapped) - cfg.mask_head_blocks :])
            if emb.shard is not None:
                logits = gather(logits, emb.shard)
            face = self.mask_head.to_grid(logits, emb.grid)
        if return_persons and cfg.person_mask_blocks and tapped and emb.ref_frames:
            features = tapped[len(tapped) - cfg.person_mask_blocks :]
            if emb.shard is not None:
                features = [gather(f, emb.shard) for f in features]
            persons = self.person_masks(features, emb.grid, emb.rope, emb.ref_frames, emb.masked_frames)
        return face, persons

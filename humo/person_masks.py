"""InterActHuman: where each person is, predicted from their reference image, and their audio injected there.

With several people in a video, HuMo's audio path drives every token with the same audio, so every mouth moves
to the mix. InterActHuman (Wang et al. 2025, arXiv 2506.09984) binds each person's audio to that person's region:

- **The mask predictor** (`PersonMaskPredictor`) reads the hidden states of the last `person_mask_blocks` blocks.
  One linear projection, shared by video and reference tokens, gives queries, keys and values; queries and keys
  are layer-normed and rotated with the DiT's own 3D RoPE (each token keeps its place on the time axis); the video
  tokens cross-attend to ONE person's reference tokens at a time; a two-layer MLP reads what each token found
  there beside the token's own value and gives a logit per latent pixel.
  The parameters are shared by all persons (a person is whoever their reference shows), and the tapped blocks'
  logits are averaged. Trained with a focal loss (`focal_loss`) on each person's whole region.
- **Local audio injection** (`local_audio_weights`, used by `humo.audio_path.AudioBranch`): every person's audio
  windows go through the audio cross-attention separately, and each token takes a blend: person p's result with
  weight m_p (the mask's probability at that token), the muted audio's result with the rest, 1 - sum(m). Muted
  audio is what a pass without audio sees (zero windows), so a token outside every mask is driven as if the audio
  were dropped, and one inside a single person's mask exactly as a one-person video with that person's audio.
- **The mask cache** lives in the sampler's state (`humo.pipeline.SamplingState.person_masks`): the masks
  predicted at one step gate the audio of the next; the first steps inject the mix globally, since there is no
  prediction yet (InterActHuman: 10 of 50).

With weights that have no predictor (both HuMo releases), the user gives a box or a mask image per person
(`box_mask`, `mask_from_image`), feathered at its edges, and the same local injection runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from humo.attention import attention
from humo.layers import LayerNorm, rope_apply

# The share of the sampling steps that inject the audio mix globally before the predicted masks take over
# (InterActHuman: 10 of 50 steps).
GLOBAL_AUDIO_SHARE = 0.2
# Feathering of user boxes and mask images, in latent pixels: the blend fades over about this width at the edge.
FEATHER = 1.0


class _Tap(nn.Module):
    """The predictor's layers for one tapped block."""

    def __init__(self, dim: int, inner: int, out: int, eps: float):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * inner)  # shared by the video and the reference tokens
        self.norm_q = LayerNorm(inner, eps, elementwise_affine=True)
        self.norm_k = LayerNorm(inner, eps, elementwise_affine=True)
        # the MLP reads what the token found in the reference beside the token's own value: softmax attention
        # always returns a blend of the reference's values, and whether that blend matches the token itself is
        # what tells the person's region from the rest
        self.mlp = nn.Sequential(nn.Linear(2 * inner, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, out))


class PersonMaskPredictor(nn.Module):
    """Per-person mask logits from the hidden states of the last K blocks and the persons' reference frames.

    inner: the width of queries, keys and values (a multiple of head_dim: the heads are the DiT's head size, so the
    DiT's RoPE table serves them).
    """

    def __init__(self, dim: int, num_blocks: int, patch: tuple[int, int, int], head_dim: int, inner: int, eps=1e-6):
        super().__init__()
        if inner % head_dim:
            raise ValueError(f"person mask width {inner} is not a multiple of the head size {head_dim}")
        self.patch, self.head_dim = patch, head_dim
        self.taps = nn.ModuleList(_Tap(dim, inner, math.prod(patch), eps) for _ in range(num_blocks))

    def forward(
        self,
        features: Sequence[torch.Tensor],
        grid: tuple[int, int, int],
        rope: tuple[torch.Tensor, torch.Tensor],
        ref_frames: Sequence[int],
        video_frames: int,
    ) -> torch.Tensor:
        """features: K x [B, L, dim] (L = f*h*w tokens of the whole time axis, f = video_frames + references);
        rope: the DiT's (cos, sin) table of those L tokens; ref_frames: each person's reference frame (a token frame
        index >= video_frames); video_frames: the token frames of the motion and generated frames, which get masks
        -> logits [B, P, video_frames * pt, h * ph, w * pw] (the latent grid of those frames)"""
        f, h, w = grid
        hw = h * w
        n_video = video_frames * hw
        cos, sin = rope
        b = features[0].shape[0]
        persons = len(ref_frames)
        ref_idx = torch.cat([torch.arange(r * hw, (r + 1) * hw) for r in ref_frames]).to(features[0].device)
        logits = []
        for tap, x in zip(self.taps, features):
            q, k, v = tap.qkv(x).chunk(3, dim=-1)
            v_video = v[:, :n_video]
            q = tap.norm_q(q[:, :n_video]).unflatten(-1, (-1, self.head_dim))
            q = rope_apply(q, cos[:n_video], sin[:n_video])
            k = tap.norm_k(k.index_select(1, ref_idx)).unflatten(-1, (-1, self.head_dim))
            k = rope_apply(k, cos[ref_idx], sin[ref_idx])
            v = v.index_select(1, ref_idx).unflatten(-1, (-1, self.head_dim))
            # one person's reference at a time: persons folded into the batch, the queries repeated
            k = k.unflatten(1, (persons, hw)).transpose(0, 1).flatten(0, 1)  # [P*B, hw, H, d]
            v = v.unflatten(1, (persons, hw)).transpose(0, 1).flatten(0, 1)
            qp = q.repeat(persons, 1, 1, 1)  # [P*B, n_video, H, d]
            own = v_video.repeat(persons, 1, 1)  # [P*B, n_video, inner]
            out = torch.cat([attention(qp, k, v).flatten(2), own], dim=-1)
            logits.append(tap.mlp(out).float())  # [P*B, n_video, prod(patch)]
        x = torch.stack(logits).mean(0).unflatten(0, (persons, b)).transpose(0, 1)  # [B, P, n_video, prod(patch)]
        pt, ph, pw = self.patch
        x = x.reshape(b, persons, video_frames, h, w, pt, ph, pw)
        return x.permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(b, persons, video_frames * pt, h * ph, w * pw)


@dataclass
class PersonAudio:
    """`HumoDiT.forward`'s `persons` argument: several people's audio and where it goes.

    windows: [B or 1, P, T, window, groups, C] each person's audio windows over the whole time axis (zeros on the
        reference frames, as the mix's);
    masks: [B or 1, P, Fm, h, w] probabilities gating each person's audio on the first Fm latent frames (the motion
        and generated frames), or None: this pass hears the forward's `audio` (the mix) everywhere;
    ref_frames: each person's reference frame on the time axis (latent frame index, after the Fm masked frames),
        which the mask predictor reads; None: no prediction.
    """

    windows: torch.Tensor
    masks: torch.Tensor | None = None
    ref_frames: tuple[int, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Local audio injection


def local_audio_weights(masks: torch.Tensor, patch: tuple[int, int, int], num_frames: int) -> torch.Tensor:
    """Blend weights of the muted audio and each person's audio, per token.

    masks: [B, P, Fm, h, w] per-person probabilities on the latent grid of the first Fm frames of the time axis
    (motion and generated frames; the frames after them, the references, hear muted audio), num_frames: the time
    axis's latent frames -> [B, 1 + P, L] weights that sum to 1 per token (index 0: muted audio), L the tokens of
    the whole time axis. A token's person weights are the masks' mean over its patch; where they add up to more
    than 1 (overlapping masks) they are scaled down to sum to 1 and the muted share is 0.
    """
    b, p, fm, h, w = masks.shape
    pt, ph, pw = patch
    m = F.avg_pool3d(masks.float().flatten(0, 1).unsqueeze(1), kernel_size=patch, stride=patch)
    m = m.reshape(b, p, fm // pt, h // ph, w // pw).clamp(0, 1)
    rest = num_frames // pt - fm // pt
    if rest:
        m = torch.cat([m, m.new_zeros(b, p, rest, h // ph, w // pw)], dim=2)
    m = m.flatten(2)  # [B, P, L]
    total = m.sum(1, keepdim=True)
    m = m / total.clamp_min(1.0)
    return torch.cat([(1 - m.sum(1, keepdim=True)).clamp_min(0), m], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Masks given by the user (weights without a predictor)


def parse_box(box: str | Sequence[float], who: str = "--box") -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' (or the four numbers as a list) in pixels of the output video -> the four numbers (checked for
    order only; `check_box` checks them against the frame)."""
    from humo.errors import HumoError

    text = box if isinstance(box, str) else ",".join(str(v) for v in box)
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise HumoError(f"{who} {text}: expected x0,y0,x1,y1 (four numbers, pixels of the output video)") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise HumoError(f"{who} {text}: expected x0,y0,x1,y1 (four numbers, pixels of the output video)")
    x0, y0, x1, y1 = vals
    if not (x1 > x0 and y1 > y0):
        raise HumoError(f"{who} {text}: needs x1 > x0 and y1 > y0")
    return vals  # type: ignore[return-value]


def check_box(box: Sequence[float], height: int, width: int, who: str = "--box") -> tuple[float, ...]:
    """A box must overlap the frame (0..width, 0..height); one that does not is a one-line error naming it. One
    that reaches beyond it is clipped to the frame, with a warning -> the box inside the frame."""
    from humo.errors import HumoError, warn

    x0, y0, x1, y1 = box
    text = ",".join(f"{v:g}" for v in box)
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise HumoError(f"{who} {text}: outside the {width}x{height} frame")
    inside = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    if inside != tuple(box):
        clipped = ",".join(f"{v:g}" for v in inside)
        warn(f"{who} {text}: reaches beyond the {width}x{height} frame; clipped to {clipped}")
    return inside


def feather(mask: np.ndarray, latent_hw: tuple[int, int], width: float = FEATHER) -> np.ndarray:
    """A [H, W] mask in [0, 1] (pixels of the video) -> [h, w] on the latent grid (area mean), softened at its edges
    by a Gaussian of `width` latent pixels, so the blend of audios fades instead of cutting between tokens."""
    t = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    t = F.adaptive_avg_pool2d(t, latent_hw)
    if width > 0:
        r = max(1, int(math.ceil(2 * width)))
        x = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (x / width) ** 2)
        g = g / g.sum()
        t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
        t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return t[0, 0].clamp(0, 1).numpy()


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """A box x0,y0,x1,y1 in pixels -> a [height, width] float mask with its area (fractional at the edges)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    xs = np.clip(np.minimum(np.arange(width) + 1, x1) - np.maximum(np.arange(width), x0), 0, 1)
    ys = np.clip(np.minimum(np.arange(height) + 1, y1) - np.maximum(np.arange(height), y0), 0, 1)
    return np.outer(ys, xs).astype(np.float32)


def mask_from_image(path: str, height: int, width: int, who: str = "--mask") -> np.ndarray:
    """A mask image of the output frame (white or opaque = the person; greyscale is soft) -> [height, width] in
    [0, 1]. Its aspect ratio must be the video's: it is resized to the frame, not fitted as references are."""
    from PIL import Image

    from humo.errors import HumoError
    from humo.media.image import load_image

    img = load_image(path).convert("L")
    if abs(img.width / img.height - width / height) > 0.01 * (width / height):
        raise HumoError(
            f"{who} {path}: {img.width}x{img.height} does not have the video's aspect ratio ({width}x{height})"
        )
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class PersonLayout:
    """Where the persons of a request are known to be: fixed masks on the latent grid [P, h, w] (user boxes or mask
    images, the same on every frame), or None when the model predicts them."""

    masks: np.ndarray | None

    @property
    def predicted(self) -> bool:
        return self.masks is None


# ---------------------------------------------------------------------------------------------------------------
# Training


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) of per-person mask logits, averaged over the valid frames' pixels.

    logits, target: [B, P, F, h, w] (target in [0, 1], soft at the edges); valid: [B, P, F] bool, frames with a
    usable mask (None: all) -> scalar (0 when nothing is valid). gamma 2 and alpha 0.25 (the weight of the
    person's pixels; the background's is 1 - alpha) as InterActHuman. `weight` (broadcastable to the logits, >= 0)
    weights each pixel; a frame's mean is divided by its weight's mean, so a uniform weight gives the plain loss.
    """
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    per_pixel = a_t * (1 - p_t) ** gamma * bce
    if weight is None:
        loss = per_pixel.mean((-2, -1))  # [B, P, F]
    else:
        w = weight.float().to(per_pixel.device).expand_as(per_pixel)
        loss = (per_pixel * w).mean((-2, -1)) / w.mean((-2, -1)).clamp_min(1e-12)
    if valid is None:
        return loss.mean()
    valid = valid.to(loss.device, torch.bool)
    return (loss * valid).sum() / valid.sum().clamp_min(1)

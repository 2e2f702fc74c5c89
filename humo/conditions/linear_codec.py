"""A linear latent codec for the proving ground: pixel blocks projected on their principal components.

It stands where the Wan VAE stands (same `encode` / `encode_images` / `zero_video_latent` / `decode` interface,
same latent layout), so precompute, the trainer and the pipeline use either without knowing which:

- time: the first frame alone, then blocks of `temporal_stride` frames, as Wan's causal VAE does
  (1 + 4k frames -> 1 + k latent frames), so audio windows and reference frames line up as with the real VAE;
- space: blocks of `stride` x `stride` pixels (one latent pixel each);
- a block's ``3 * t * s * s`` values (t = 1 for the first frame, 4 after) minus their mean, projected on the
  top `z_dim` principal components of the training clips' blocks and whitened to unit variance per channel (or,
  on request, scaled by one factor so the channels' mean variance is 1). Decoding is the transpose: one matrix
  product and the mean.

Why a linear codec: a CPU-sized Wan VAE trained for half an hour reconstructs the proving ground's clips at
~20 dB and loses the mouth, which caps every model trained behind it; the principal components of 4x4-pixel
blocks, fitted in seconds, keep the clips at ~30 dB (16 channels) and the mouth's opening readable. The real
Wan VAE (`humo.conditions.vae.WanVAE`) stays the codec of the released models.

On disk, a folder with ``codec.json`` (kind, strides, z_dim, fit report) and ``codec.safetensors`` (the four
matrices and two means); `humo.conditions.vae.load_vae_folder` tells it from a diffusers VAE folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from humo.conditions.vae import (
    TEMPORAL_STRIDE,
    check_latent_tensor,
    check_video_size,
    check_video_tensor,
    images_as_videos,
)
from humo.errors import HumoError, atomic_path, check_keys

CODEC_KIND = "linear-pca"
CONFIG_NAME = "codec.json"
WEIGHTS_NAME = "codec.safetensors"
# Each part: the first frame ("first": 1-frame blocks) and the later frames ("rest": 4-frame blocks).
_PARTS = ("first", "rest")


def _blocks(video: torch.Tensor, frames_per_block: int, s: int) -> torch.Tensor:
    """[B, 3, n*t, H, W] -> [B, n, H/s, W/s, 3*t*s*s] (t = frames_per_block): one row per latent pixel."""
    b, c, f, h, w = video.shape
    t = frames_per_block
    x = video.reshape(b, c, f // t, t, h // s, s, w // s, s)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, f // t, h // s, w // s, c * t * s * s)


def _unblocks(rows: torch.Tensor, frames_per_block: int, s: int) -> torch.Tensor:
    """Inverse of `_blocks`: [B, n, h, w, 3*t*s*s] -> [B, 3, n*t, h*s, w*s]."""
    b, n, h, w, _ = rows.shape
    t = frames_per_block
    x = rows.reshape(b, n, h, w, 3, t, s, s)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, 3, n * t, h * s, w * s)


class LinearCodec:
    """Encode: ``z = enc @ (block - mean)``; decode: ``block = dec @ z + mean``, per part (first frame, later ones).

    ``enc_first`` [z, 3*s*s], ``enc_rest`` [z, 3*4*s*s] (scaled projections), ``dec_*`` their [P, z]
    inverses on the kept subspace, ``mean_*`` [P]. Latents are float32 ``[B, z_dim, 1 + (T-1)/4, H/s, W/s]``.
    """

    def __init__(self, weights: dict[str, torch.Tensor], stride: int, report: dict[str, Any] | None = None):
        need = {f"{k}_{p}" for k in ("enc", "dec", "mean") for p in _PARTS}
        check_keys("linear codec weights", weights, dict.fromkeys(need))
        self.w = {k: v.float() for k, v in weights.items()}
        self.stride = int(stride)
        z = self.w["enc_first"].shape[0]
        for p, t in (("first", 1), ("rest", TEMPORAL_STRIDE)):
            size = 3 * t * self.stride**2
            shapes = (self.w[f"enc_{p}"].shape, self.w[f"dec_{p}"].shape, self.w[f"mean_{p}"].shape)
            if shapes != ((z, size), (size, z), (size,)):
                raise HumoError(
                    f"linear codec weights ({p} frames): shapes {[list(s) for s in shapes]} do not fit "
                    f"z_dim {z} and {size} values per block (stride {self.stride})"
                )
        self.report = dict(report or {})

    # -- the interface shared with WanVAE -------------------------------------------------------------------

    @property
    def z_dim(self) -> int:
        return int(self.w["enc_first"].shape[0])

    @property
    def spatial_stride(self) -> int:
        return self.stride

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.w["enc_first"].device

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": CODEC_KIND, "z_dim": self.z_dim, "stride": self.stride, "temporal_stride": TEMPORAL_STRIDE}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.w)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LinearCodec:
        """Move to `device`; the codec computes in float32 whatever `dtype` asks (its inputs are cast)."""
        self.w = {k: v.to(device=device) for k, v in self.w.items()}
        return self

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> ``[B, z_dim, 1 + (T-1)//4, H/s, W/s]`` (float32; mean channel
        variance 1 on the fitted clips)."""
        check_video_tensor(video, self.stride)
        x = video.to(device=self.device, dtype=torch.float32)
        parts = []
        for p, t, frames in (("first", 1, x[:, :, :1]), ("rest", TEMPORAL_STRIDE, x[:, :, 1:])):
            if frames.shape[2] == 0:
                continue
            rows = _blocks(frames, t, self.stride) - self.w[f"mean_{p}"]
            parts.append(rows @ self.w[f"enc_{p}"].T)  # [B, n, h, w, z]
        return torch.cat(parts, dim=1).permute(0, 4, 1, 2, 3).contiguous()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, z_dim, 1, H/s, W/s]``: each image encoded as a one-frame video."""
        return self.encode(images_as_videos(images))

    def zero_video_latent(self, frames: int, height: int, width: int, dtype: torch.dtype = torch.float32):
        """The latent ``[1, z_dim, 1 + (frames-1)//4, height/s, width/s]`` of an all-zero (mid-grey) video."""
        check_video_size(frames, height, width, self.stride)
        return self.encode(torch.zeros(1, 3, frames, height, width, device=self.device)).to(dtype)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        out_dtype: torch.dtype = torch.float32,
        out_device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """``[B, z_dim, F, h, w]`` -> video ``[B, 3, 1 + 4(F-1), s*h, s*w]`` in [-1, 1]."""
        check_latent_tensor(latents, self.z_dim)
        out_device = latents.device if out_device is None else torch.device(out_device)
        z = latents.to(device=self.device, dtype=torch.float32).permute(0, 2, 3, 4, 1)  # [B, F, h, w, z]
        first = _unblocks(z[:, :1] @ self.w["dec_first"].T + self.w["mean_first"], 1, self.stride)
        rest = _unblocks(z[:, 1:] @ self.w["dec_rest"].T + self.w["mean_rest"], TEMPORAL_STRIDE, self.stride)
        return torch.cat([first, rest], dim=2).clamp_(-1.0, 1.0).to(device=out_device, dtype=out_dtype)

    # -- files -----------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``codec.json`` and ``codec.safetensors`` into `folder`, each complete or absent."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.w.items()}, str(tmp))
        with atomic_path(folder / CONFIG_NAME) as tmp:
            Path(tmp).write_text(json.dumps({**self.config, "report": self.report}, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> LinearCodec:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            cfg = json.loads((folder / CONFIG_NAME).read_text())
        except (OSError, ValueError) as e:
            raise HumoError(f"codec {folder / CONFIG_NAME}: cannot read ({e})") from None
        if not isinstance(cfg, dict) or cfg.get("kind") != CODEC_KIND:
            raise HumoError(f"codec {folder / CONFIG_NAME}: kind is not {CODEC_KIND!r}")
        if cfg.get("temporal_stride", TEMPORAL_STRIDE) != TEMPORAL_STRIDE:
            raise HumoError(f"codec {folder / CONFIG_NAME}: temporal_stride must be {TEMPORAL_STRIDE}")
        try:
            weights = load_file(str(folder / WEIGHTS_NAME), device=str(device))
        except (OSError, SafetensorError) as e:
            raise HumoError(f"codec {folder / WEIGHTS_NAME}: cannot load ({e})") from None
        codec = cls(weights, int(cfg.get("stride", 0)), cfg.get("report"))
        if codec.z_dim != cfg.get("z_dim"):
            raise HumoError(f"codec {folder}: z_dim {cfg.get('z_dim')} in {CONFIG_NAME}, {codec.z_dim} in weights")
        return codec


# ----------------------------------------------------------------------------------------------------------------
# Fitting


class _Moments:
    """Running sum and sum of outer products of rows (float64): the mean and covariance of a part's blocks."""

    def __init__(self, size: int):
        self.n = 0
        self.sum = torch.zeros(size, dtype=torch.float64)
        self.outer = torch.zeros(size, size, dtype=torch.float64)

    def add(self, rows: torch.Tensor) -> None:
        r = rows.reshape(-1, rows.shape[-1]).double()
        self.n += r.shape[0]
        self.sum += r.sum(0)
        self.outer += r.T @ r

    def components(self, z_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(mean [P], top-z eigenvectors [P, z], their std [z], share of the variance they keep)."""
        if self.n < 2:
            raise HumoError("linear codec fit: fewer than two blocks of data")
        mean = self.sum / self.n
        cov = self.outer / self.n - torch.outer(mean, mean)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        vals, vecs = vals.flip(0).clamp_min(0), vecs.flip(1)
        # A sign convention, so a refit on the same data gives the same codec: each vector's largest entry > 0.
        sign = torch.sign(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
        vecs = vecs * sign
        kept = float(vals[:z_dim].sum() / vals.sum().clamp_min(1e-30))
        return mean, vecs[:, :z_dim], vals[:z_dim].sqrt().clamp_min(1e-6), kept


SCALINGS = ("global", "channel")


def fit_linear_codec(
    videos: Iterable[torch.Tensor], z_dim: int = 16, stride: int = 4, scaling: str = "channel"
) -> LinearCodec:
    """The codec of the top `z_dim` principal components of `videos`' blocks (each ``[1, 3, 1+4k, H, W]`` in
    [-1, 1]). Reference images count as first frames: pass them as one-frame videos.

    `scaling` "channel" (default) whitens each channel to unit variance, as a VAE with measured latent statistics
    gives. "global" divides every channel by one number, so the mean channel variance is 1 and the channels keep
    PCA's order of variance: the latent MSE is then the pixel MSE (within the kept subspace) up to a factor, and
    the flow loss weighs a component by how much it shows, where whitening gives the fine components (anti-aliased
    edges, texture phases) as much loss as the figure. docs/proving-ground.md, "The latent codec", has what each
    did to a short stage-0 run.
    """
    if z_dim < 1:
        raise HumoError(f"linear codec: z_dim {z_dim} must be >= 1")
    if scaling not in SCALINGS:
        raise HumoError(f"linear codec: scaling {scaling!r}: use {' | '.join(SCALINGS)}")
    first, rest = _Moments(3 * stride**2), _Moments(3 * TEMPORAL_STRIDE * stride**2)
    for video in videos:
        check_video_size(video.shape[2], video.shape[3], video.shape[4], stride)
        first.add(_blocks(video[:, :, :1].float(), 1, stride))
        if video.shape[2] > 1:
            rest.add(_blocks(video[:, :, 1:].float(), TEMPORAL_STRIDE, stride))
    weights, report = {}, {}
    for name, m in (("first", first), ("rest", rest)):
        if z_dim > m.sum.numel():
            raise HumoError(f"linear codec: z_dim {z_dim} exceeds the {m.sum.numel()} values of a {name} block")
        mean, vecs, std, kept = m.components(z_dim)
        if scaling == "global":
            std = std.square().mean().sqrt().expand_as(std)
        weights[f"enc_{name}"] = (vecs / std).T.float().contiguous()
        weights[f"dec_{name}"] = (vecs * std).float().contiguous()
        weights[f"mean_{name}"] = mean.float()
        report[f"variance_kept_{name}"] = round(kept, 6)
        report[f"blocks_{name}"] = m.n
    report["scaling"] = scaling
    return LinearCodec(weights, stride, report)

"""How well a codec (the Wan VAE or the linear codec) keeps what the proving ground measures: the round trip's
PSNR on held-out clips, in the frame and in the face, and the mouth reader's agreement between the clips and their
reconstructions (`humo fit-codec` and `humo train-vae` report it)."""

from __future__ import annotations

import math

import numpy as np
import torch

from humo.conditions.vae_training import ClipBank, clip_tensor


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        m = np.broadcast_to(mask[..., None] > 0.5, d.shape)
        if not m.any():
            return float("nan")
        d = d[m]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def round_trip(vae, video: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> encoded and decoded by `vae` (a `WanVAE`) -> uint8, T cut to 4k+1."""
    y = vae.decode(vae.encode(clip_tensor(video)))[0]
    return y.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 3, 0).numpy()


def evaluate_round_trip(vae, bank: ClipBank) -> dict[str, float]:
    """Mean PSNR (frame, face) and the mouth reader's agreement (Pearson r) between clips and reconstructions."""
    from humo.proving_ground import readers

    psnr, psnr_face, corr = [], [], []
    for video, mask in zip(bank.videos, bank.masks, strict=True):
        rec = round_trip(vae, video)
        video, mask = video[: len(rec)], mask[: len(rec)]
        psnr.append(_psnr(video, rec))
        if mask.any():
            psnr_face.append(_psnr(video, rec, mask))
        a = readers.mouth_opening(readers._as_float(video))
        b = readers.mouth_opening(readers._as_float(rec))
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() > 2 and np.std(a[ok]) > 0 and np.std(b[ok]) > 0:
            corr.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    return {
        "psnr": float(np.mean(psnr)),
        "psnr_face": float(np.mean(psnr_face)) if psnr_face else float("nan"),
        "mouth_corr": float(np.mean(corr)) if corr else float("nan"),
        "clips": len(bank),
    }

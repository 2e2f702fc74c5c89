"""SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", 2016) as the lip-sync judges of
Wav2Lip, LatentSync and HuMo's paper use it: Sync-C and Sync-D (also called LSE-C, LSE-D) of a talking face.

Two streams map 0.2 s of a clip to 1024-d embeddings that lie close together when picture and sound are in sync:

- **audio**: 13 MFCCs at 100 per second (`mfcc`, python_speech_features' defaults: 25 ms rectangular windows, 26
  mel filters, pre-emphasis 0.97, lifter 22, c0 replaced by the log frame energy, on int16-scaled samples), 20 of
  them [B, 1, 13, 20] -> five 3x3 conv layers with BatchNorm and max pooling, a 5x4 conv to 512 channels, then a
  two-layer MLP (512 -> 512 -> 1024);
- **lip**: five face crops [B, 3, 5, 224, 224] (BGR, 0..255, not normalised) -> a 5x7x7 3-D conv over the five
  frames, four 1x3x3 or 1x5x5 convs with BatchNorm and max pooling, a 1x6x6 conv to 512 channels, the same MLP.

The module names are the published checkpoint's (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``, each
an ``nn.Sequential``, so ``netcnnaud.0.weight`` ...), so its state dict loads as it is: `load_syncnet` reads a
safetensors file or a ``torch.load(weights_only=True)`` pickle (a state dict, or one under ``state_dict``), and any
missing, unexpected or misshaped key is a HumoError that lists them. No weights ship or are downloaded: the user
supplies them (``--syncnet WEIGHTS``).

**Scores** (`offset_scores`, as syncnet_python's evaluation computes them): one lip embedding per video frame t
(frames t..t+4) and one audio embedding per frame (MFCC frames 4t..4t+19); for each offset k in -vshift..vshift
(default 15 frames, LatentSync's; syncnet_python's demo uses 10) the mean over t of the Euclidean distance
between lip[t] and audio[t + k], the audio embeddings padded with zero vectors past either end. **Sync-D** = the
least mean distance, **Sync-C** = median over offsets - least, **offset** = the best k, in the proving ground's
convention: k > 0 when the sound lags the picture (syncnet_python prints the opposite sign as its "AV offset").

Face crops (`face_crops`) follow syncnet_python's pipeline: a box from the face detector (here the faces stage's
Face Mesh box), its half-size s = max(width, height) / 2 smoothed over time, the crop from s above the centre to
1.8 s below it and 1.4 s either side, resized to 224x224 (out-of-frame parts padded grey, 110, as its pipeline
pads).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from humo.errors import HumoError, first_line

EMBED_DIM = 1024
CROP_SIZE = 224
FRAMES_PER_WINDOW = 5  # video frames per lip embedding (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # 100 MFCC frames a second over 25 video frames
MFCC_PER_WINDOW = 20
VSHIFT = 15
CROP_SCALE = 0.4  # syncnet_python's crop_scale: the crop reaches (1 + 2 * 0.4) half-sizes below the face centre
PAD_VALUE = 110


def _conv_block(conv: nn.Module, channels: int, pool: nn.Module | None, dims: int, inplace: bool = True) -> list:
    norm = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)
    return [conv, norm, nn.ReLU(inplace=inplace)] + ([pool] if pool is not None else [])


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """The two-stream SyncNet: `forward_aud` MFCC windows [B, 1, 13, 20] -> [B, dim]; `forward_lip` face crops
    [B, 3, 5, 224, 224] -> [B, dim]. Layer indices inside each ``nn.Sequential`` follow the published weights."""

    def __init__(self, dim: int = EMBED_DIM):
        super().__init__()
        c2 = lambda i, o, k=(3, 3), **kw: nn.Conv2d(i, o, kernel_size=k, **{"padding": (1, 1), **kw})  # noqa: E731
        self.netcnnaud = nn.Sequential(
            *_conv_block(c2(1, 64), 64, nn.MaxPool2d((1, 1), (1, 1)), 2),
            *_conv_block(c2(64, 192), 192, nn.MaxPool2d((3, 3), (1, 2)), 2),
            *_conv_block(c2(192, 384), 384, None, 2),
            *_conv_block(c2(384, 256), 256, None, 2),
            *_conv_block(c2(256, 256), 256, nn.MaxPool2d((3, 3), (2, 2)), 2),
            *_conv_block(c2(256, 512, (5, 4), padding=(0, 0)), 512, None, 2, inplace=False),
        )
        self.netfcaud = _mlp(dim)
        c3 = nn.Conv3d
        self.netcnnlip = nn.Sequential(
            *_conv_block(c3(3, 96, (5, 7, 7), (1, 2, 2), 0), 96, nn.MaxPool3d((1, 3, 3), (1, 2, 2)), 3),
            *_conv_block(
                c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), 256, nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), 3
            ),
            *_conv_block(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, None, 3),
            *_conv_block(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, None, 3),
            *_conv_block(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, nn.MaxPool3d((1, 3, 3), (1, 2, 2)), 3),
            *_conv_block(c3(256, 512, (1, 6, 6), padding=0), 512, None, 3),
        )
        self.netfclip = _mlp(dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC windows [B, 1, 13, 20] -> audio embeddings [B, dim]."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Face crops [B, 3, 5, 224, 224] (BGR, 0..255) -> lip embeddings [B, dim]."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HumoError(f"SyncNet weights {path}: not a state dict of tensors (got {type(state).__name__})")
    return state


def load_syncnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """SyncNet in eval mode with the user's weights from `path` (``.safetensors``, else a torch pickle read with
    ``weights_only=True``). Every key must match the architecture by name and shape (BatchNorm's
    ``num_batches_tracked`` may be absent, as in checkpoints saved by old PyTorch); otherwise a HumoError lists the
    missing, unexpected and misshaped keys."""
    from humo.errors import check_keys

    p = Path(path)
    if not p.is_file():
        raise HumoError(f"SyncNet weights {p}: no such file")
    try:
        state = _read_state(p)
    except HumoError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors', pickle's and torch's errors
        raise HumoError(f"SyncNet weights {p}: does not read ({first_line(e)})") from None
    model = SyncNet()
    check_keys(f"SyncNet weights {p}", state, model.state_dict(), may_miss=lambda k: k.endswith("num_batches_tracked"))
    model.load_state_dict(state, strict=False)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------------------------
# Audio features


def _mel_filters(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    """Triangular mel filters [nfilt, nfft // 2 + 1] with python_speech_features' bin rounding."""
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)  # noqa: E731
    mels = np.linspace(hz2mel(0), hz2mel(sample_rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(mels) / sample_rate).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        fb[j, a:b] = (np.arange(a, b) - a) / max(b - a, 1)
        fb[j, b:c] = (c - np.arange(b, c)) / max(c - b, 1)
    return fb


def _dct_ortho(x: np.ndarray) -> np.ndarray:
    """DCT-II with orthonormal scaling along the last axis (scipy's ``dct(norm="ortho")``)."""
    n = x.shape[-1]
    k = np.arange(n)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return x @ basis.T


def mfcc(samples: np.ndarray, sample_rate: int = 16000, numcep: int = 13) -> np.ndarray:
    """MFCCs [N, 13] at 100 per second of mono float samples [-1, 1] as python_speech_features' ``mfcc`` computes
    them from the int16 samples syncnet_python reads (so the samples are scaled by 32768 first)."""
    x = np.asarray(samples, np.float64) * 32768.0
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1]) if len(x) else np.zeros(1)
    win, step, nfft = int(0.025 * sample_rate + 0.5), int(0.01 * sample_rate + 0.5), 512
    n = 1 if len(x) <= win else 1 + int(np.ceil((len(x) - win) / step))
    x = np.pad(x, (0, (n - 1) * step + win - len(x)))
    frames = x[np.arange(win)[None, :] + step * np.arange(n)[:, None]]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = np.where(power.sum(1) == 0, eps, power.sum(1))
    feat = power @ _mel_filters(26, nfft, sample_rate).T
    feat = np.log(np.where(feat == 0, eps, feat))
    cep = _dct_ortho(feat)[:, :numcep]
    cep *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(numcep) / 22)
    cep[:, 0] = np.log(energy)
    return cep.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Face crops


def face_crops(frames, boxes: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """syncnet_python's face crops [T, size, size, 3] uint8 (BGR, as it reads them with OpenCV) of RGB `frames`
    [T, H, W, 3] (or an iterable of frames, read one at a time) around face boxes [T, 4] (x0, y0, x1, y1; NaN rows
    where no face: filled from the nearest frames). Raises HumoError when no frame has a face."""
    import cv2

    boxes = np.asarray(boxes, np.float64)
    ok = np.isfinite(boxes).all(1)
    if not ok.any():
        raise HumoError("no face in any frame: SyncNet needs a face track")
    t = np.arange(len(boxes))
    filled = np.stack([np.interp(t, t[ok], boxes[ok, j]) for j in range(4)], 1)
    half = np.maximum(filled[:, 2] - filled[:, 0], filled[:, 3] - filled[:, 1]) / 2
    cx, cy = (filled[:, 0] + filled[:, 2]) / 2, (filled[:, 1] + filled[:, 3]) / 2
    k = np.ones(5) / 5  # syncnet_python smooths the track with a median filter of 13; a short mean is enough here
    if len(half) >= 5:
        half, cx, cy = (np.convolve(np.pad(v, 2, mode="edge"), k, mode="valid") for v in (half, cx, cy))
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    count = 0
    for i, frame in zip(range(len(boxes)), frames):
        count = i + 1
        s = float(half[i])
        pad = int(np.ceil(s * (1 + 2 * CROP_SCALE))) + 1
        img = np.pad(frame[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        y0, y1 = cy[i] + pad - s, cy[i] + pad + s * (1 + 2 * CROP_SCALE)
        x0, x1 = cx[i] + pad - s * (1 + CROP_SCALE), cx[i] + pad + s * (1 + CROP_SCALE)
        crop = img[int(round(y0)) : int(round(y1)), int(round(x0)) : int(round(x1))]
        out[i] = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_LINEAR)
    return out[:count]


# ---------------------------------------------------------------------------------------------------------------
# Scores


def offset_scores(lip: torch.Tensor | np.ndarray, aud: torch.Tensor | np.ndarray, vshift: int = VSHIFT) -> dict:
    """Sync scores of lip embeddings [N, D] against audio embeddings [N, D] (row t of each covers frames t..t+4):
    ``sync_c`` (median - least mean distance), ``sync_d`` (least mean distance), ``sync_offset`` (the best k; k > 0:
    the sound lags), ``distances`` {k: mean distance}. Audio rows past either end count as zero vectors."""
    lip, aud = torch.as_tensor(lip, dtype=torch.float32), torch.as_tensor(aud, dtype=torch.float32)
    n = min(len(lip), len(aud))
    if n < 1:
        raise HumoError("SyncNet: the clip is shorter than one 5-frame window")
    lip, aud = lip[:n], aud[:n]
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    ks = torch.arange(-vshift, vshift + 1)
    idx = torch.arange(n)[:, None] + vshift + ks[None, :]  # [N, 2 vshift + 1]: audio row t + k in `padded`
    dist = (lip[:, None, :] - padded[idx]).pow(2).sum(-1).add(1e-12).sqrt().mean(0)  # [2 vshift + 1]
    best = int(dist.argmin())
    # torch.median of an odd count is the middle value, as syncnet_python's
    return {
        "sync_c": float(dist.median() - dist[best]),
        "sync_d": float(dist[best]),
        "sync_offset": int(ks[best]),
        "distances": {int(k): float(d) for k, d in zip(ks, dist)},
    }


@torch.no_grad()
def embed(model: SyncNet, crops: np.ndarray, samples: np.ndarray, batch: int = 20) -> tuple[torch.Tensor, ...]:
    """Lip and audio embeddings ([N, D] each, N = frames - 5 as syncnet_python counts, limited by the audio) of face
    crops [T, 224, 224, 3] (BGR uint8) and 16 kHz mono samples at 25 fps."""
    cc = torch.from_numpy(mfcc(samples)).T[None]  # [1, 13, M]
    # syncnet_python's count: windows at frames 0 .. min(frames, audio frames) - 6 (one short of the last)
    n = min(len(crops), int(len(samples) // 640)) - FRAMES_PER_WINDOW
    n = min(n, (cc.shape[-1] - MFCC_PER_WINDOW) // MFCC_PER_FRAME + 1)
    if n < 1:
        raise HumoError(f"SyncNet: needs at least {FRAMES_PER_WINDOW + 1} frames of picture and sound")
    device = next(model.parameters()).device
    video = torch.from_numpy(np.ascontiguousarray(crops)).permute(3, 0, 1, 2).float()  # [3, T, H, W]
    lips, auds = [], []
    for s in range(0, n, batch):
        ts = range(s, min(n, s + batch))
        v = torch.stack([video[:, t : t + FRAMES_PER_WINDOW] for t in ts]).to(device)
        a = torch.stack([cc[:, :, MFCC_PER_FRAME * t : MFCC_PER_FRAME * t + MFCC_PER_WINDOW] for t in ts]).to(device)
        lips.append(model.forward_lip(v).cpu())
        auds.append(model.forward_aud(a).cpu())
    return torch.cat(lips), torch.cat(auds)


def syncnet_scores(model: SyncNet, frames, boxes: np.ndarray, samples: np.ndarray, vshift: int = VSHIFT) -> dict:
    """Sync-C, Sync-D and offset (`offset_scores`) of RGB frames [T, H, W, 3] (or a stream of them) at 25 fps with
    face boxes [T, 4] against 16 kHz mono samples."""
    lip, aud = embed(model, face_crops(frames, boxes), samples)
    return offset_scores(lip, aud, vshift)

"""Training the Wan VAE (diffusers' `AutoencoderKLWan`) on a manifest's clips: `humo train-vae`.

The proving ground has no pretrained VAE, so its toy VAE (same class and code path as Wan2.1's, tiny widths) is
trained here on proving-ground clips. The recipe is a plain autoencoder fit:

- data: random windows of `frames` frames (4k+1, so the causal encoder sees its first-frame path and its 4-frame
  chunks) cut from clips held in memory, random crops of `crop` pixels (0: whole frames), random horizontal flips;
- loss: L1 + MSE on pixels, each pixel weighted ``1 + face_weight * face_mask`` (the face, and in it the mouth, is
  a few pixels of a 64x64 frame but carries the audio-visual task), plus ``kl_weight * KL`` of the posterior;
- end: the per-channel mean/std of the latents over held-out clips become the VAE's ``latents_mean/std`` (what
  `WanVAE.encode` normalises with), so the DiT sees unit-scale latents, as with the released VAE.

A checkpoint (model, optimiser, step, RNG) is written atomically every `checkpoint_every` steps and a run resumes
from it. The report (``OUT/report.json``) gives, with `humo.evaluation.codec.evaluate_round_trip` (what
`humo train-vae` passes), the round trip's PSNR on held-out clips, in the frame and in the face, and how well the
proving ground's mouth reader agrees between the clips and their reconstructions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humo.errors import HumoError, atomic_path


@dataclass
class VAETrainConfig:
    """A `humo train-vae` run. ``base`` names the starting architecture (``toy`` = `TOY_VAE_CONFIG`)."""

    manifest: str = ""
    out: str = "runs/vae"
    base: str = "toy"
    init: str | None = None  # a diffusers VAE folder to fine-tune instead of a fresh `base`
    steps: int = 1050
    batch_size: int = 3
    # 9 = the first frame + two 4-frame chunks: the second chunk is the first to read its causal cache from a
    # full chunk, as every later chunk of a long clip does (5-frame windows leave that path untrained).
    frames: int = 9
    # Square crop side in pixels, a multiple of 8 (0: whole frames). Whole frames by default: the mid-block
    # attention sees as many latent pixels as at inference, and crops generalised badly to whole frames.
    crop: int = 0
    # Then whole clips: from step `long_from` on, windows of `long_frames` frames, `long_batch_size` per step. Short
    # windows learn the frames fast but leave the causal cache's long-run behaviour untrained (later chunks of a
    # 49-frame clip drift); whole clips teach it. 0 turns this phase off.
    long_from: int = 800
    long_frames: int = 49
    long_batch_size: int = 1
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decay to lr * this
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    kl_weight: float = 1e-6
    sample_posterior: bool = False  # decode a posterior sample (a VAE) or its mean (an autoencoder; see vae_loss)
    face_weight: float = 4.0
    max_clips: int = 600  # clips held in memory for training (the first ones of the split)
    eval_clips: int = 12  # held-out clips (split != train) for the report and the latent statistics
    seed: int = 0
    threads: int = 0  # torch threads (0: leave as is)
    log_every: int = 20
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        problems = []
        if not self.manifest:
            problems.append("manifest: required")
        for name in ("frames", "long_frames"):
            v = getattr(self, name)
            if v < 1 or (v - 1) % 4:
                problems.append(f"{name} {v}: must be 4k+1 (1, 5, 9, ...)")
        if self.long_from < 0 or self.long_batch_size < 1:
            problems.append("long_from must be >= 0 and long_batch_size >= 1")
        if self.crop < 0 or self.crop % 8:
            problems.append(f"crop {self.crop}: must be 0 or a positive multiple of 8")
        for name in ("steps", "batch_size", "max_clips", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} {getattr(self, name)}: must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr {self.lr}: must be a positive number")
        if self.base != "toy" and self.init is None:
            problems.append(f"base {self.base!r}: only 'toy' (or give init=<diffusers VAE folder>)")
        if problems:
            raise HumoError("train-vae config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class ClipBank:
    """Clips in memory: ``videos[i]`` uint8 [T, H, W, 3] and ``masks[i]`` float [T, H, W] (zeros if none)."""

    videos: list[np.ndarray]
    masks: list[np.ndarray]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.videos)


def load_clips(manifest: str | os.PathLike, *, train: bool, limit: int) -> ClipBank:
    """The first `limit` clips of the training split (`train`) or of the other splits, decoded into memory."""
    from humo.data.manifest import read_manifest
    from humo.data.precompute import read_face_masks
    from humo.media.video import read_video

    samples = [s for s in read_manifest(manifest) if (s.split == "train") == train][:limit]
    if not samples:
        which = "training" if train else "held-out (split != train)"
        raise HumoError(f"manifest {manifest}: no {which} clips")
    videos, masks, ids = [], [], []
    for s in samples:
        frames = read_video(s.video_path)[0]
        if s.face_masks_path is not None and s.face_masks_path.is_file():
            m = read_face_masks(s.face_masks_path).astype(np.float32)
            if m.shape[1:] != frames.shape[1:3]:
                raise HumoError(f"sample {s.id}: face masks {list(m.shape)} do not match frames {list(frames.shape)}")
            m = m[: len(frames)]
            frames = frames[: len(m)]
        else:
            m = np.zeros(frames.shape[:3], np.float32)
        videos.append(frames)
        masks.append(m)
        ids.append(s.id)
    return ClipBank(videos, masks, ids)


def window_at(step: int, cfg: VAETrainConfig) -> tuple[int, int]:
    """(frames, batch size) of the batches at optimiser step `step`."""
    if cfg.long_from and step >= cfg.long_from:
        return cfg.long_frames, cfg.long_batch_size
    return cfg.frames, cfg.batch_size


def sample_batch(
    bank: ClipBank, cfg: VAETrainConfig, g: np.random.Generator, step: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows: video ``[B, 3, T, S, S]`` in [-1, 1] and weights ``[B, 1, T, S, S]``
    (T and B from `window_at(step)`; S the crop or the frame size)."""
    frames, batch = window_at(step, cfg)
    xs, ws = [], []
    for _ in range(batch):
        i = int(g.integers(len(bank)))
        v, m = bank.videos[i], bank.masks[i]
        t0 = int(g.integers(max(1, len(v) - frames + 1)))
        v, m = v[t0 : t0 + frames], m[t0 : t0 + frames]
        if len(v) < frames:
            raise HumoError(f"clip {bank.ids[i]}: {len(v)} frames, shorter than a {frames}-frame window")
        if cfg.crop:
            h, w = v.shape[1:3]
            if cfg.crop > min(h, w):
                raise HumoError(f"crop {cfg.crop}: larger than clip {bank.ids[i]} ({w}x{h})")
            # Half of the crops are centred near the face, so the mouth is seen often enough to be learnt.
            if m.any() and g.random() < 0.5:
                ys, xs_ = np.nonzero(m.max(0))
                cy, cx = int(ys.mean()), int(xs_.mean())
                y0 = int(np.clip(cy - cfg.crop // 2 + g.integers(-4, 5), 0, h - cfg.crop))
                x0 = int(np.clip(cx - cfg.crop // 2 + g.integers(-4, 5), 0, w - cfg.crop))
            else:
                y0, x0 = int(g.integers(h - cfg.crop + 1)), int(g.integers(w - cfg.crop + 1))
            v = v[:, y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
            m = m[:, y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
        if g.random() < 0.5:
            v, m = v[:, :, ::-1], m[:, :, ::-1]
        xs.append(torch.from_numpy(np.ascontiguousarray(v)).permute(3, 0, 1, 2))
        ws.append(torch.from_numpy(np.ascontiguousarray(m)).unsqueeze(0))
    x = torch.stack(xs).float().div(127.5).sub(1.0)
    w = 1.0 + cfg.face_weight * torch.stack(ws)
    return x, w


# ----------------------------------------------------------------------------------------------------------------
# Loss, schedule, checkpoints


def decode_unclamped(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """`AutoencoderKLWan.decode` without its final clamp to [-1, 1]: latent [B, C, F, h, w] -> video.

    The clamp stops the gradient of every pixel pushed past +-1, and the proving ground's flat saturated colours
    sit there, so a fresh VAE learns them slowly. Same causal frame-by-frame loop (the decoder's cache carries
    the earlier frames); inference keeps diffusers' clamped decode.
    """
    model.clear_cache()
    x = model.post_quant_conv(z)
    frames = []
    for i in range(x.shape[2]):
        model._conv_idx = [0]
        frames.append(
            model.decoder(x[:, :, i : i + 1], feat_cache=model._feat_map, feat_idx=model._conv_idx, first_chunk=i == 0)
        )
    model.clear_cache()
    return torch.cat(frames, dim=2)


def vae_loss(
    model: torch.nn.Module, x: torch.Tensor, w: torch.Tensor, kl_weight: float, sample_posterior: bool = False
) -> dict[str, torch.Tensor]:
    """Weighted L1 + MSE reconstruction plus `kl_weight` * KL for video `x` [B, 3, T, H, W], weights `w`.

    With `sample_posterior=False` the decoder sees the posterior mean: a fresh encoder's log-variance is ~0, so a
    sample is mostly unit noise and a short CPU run spends its steps shrinking it first; the DiT only ever sees
    the mean (`WanVAE.encode`), and the KL term still keeps the latent scale in check.
    """
    posterior = model.encode(x).latent_dist
    recon = decode_unclamped(model, posterior.sample() if sample_posterior else posterior.mode())
    err = recon - x
    rec = ((err.abs() + err.square()) * w).mean() / w.mean()
    kl = posterior.kl().mean() / x[0].numel()  # per input value, so kl_weight does not depend on the clip size
    return {"loss": rec + kl_weight * kl, "rec": rec.detach(), "kl": kl.detach()}


def lr_at(step: int, cfg: VAETrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _save_checkpoint(path: Path, model, opt, step: int, g: np.random.Generator) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": torch.tensor(step),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(g.bit_generator.state),
    }
    with atomic_path(path) as tmp:
        torch.save(state, str(tmp))


def _load_checkpoint(path: Path, model, opt) -> tuple[int, dict]:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), json.loads(state["numpy_rng"])


# ----------------------------------------------------------------------------------------------------------------
# Evaluation of the round trip


def clip_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> [1, 3, T', H, W] in [-1, 1], T' the longest 4k+1 <= T (what the VAE takes)."""
    from humo.data.precompute import clip_frames, prepare_video

    return prepare_video(video, clip_frames(len(video), None), None, None, "clip")


@torch.no_grad()
def latent_statistics(vae, bank: ClipBank) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw (unnormalised) latent means over the clips of `bank`."""
    zs = []
    for video in bank.videos:
        z = vae.model.encode(clip_tensor(video)).latent_dist.mode()[0]  # [C, F, h, w]
        zs.append(z.flatten(1))
    z = torch.cat(zs, dim=1).double()
    return z.mean(1).tolist(), z.std(1).clamp_min(1e-4).tolist()


# ----------------------------------------------------------------------------------------------------------------
# The run


def _fresh_vae(cfg: VAETrainConfig):
    from humo.conditions.vae import WanVAE

    if cfg.init is not None:
        vae = WanVAE.from_pretrained(cfg.init)
    else:
        vae = WanVAE.toy(seed=cfg.seed)
    # Training starts from identity statistics; measured ones are set at the end.
    vae.set_latent_stats([0.0] * vae.z_dim, [1.0] * vae.z_dim)
    return vae


def train_vae(cfg: VAETrainConfig, log=print, evaluate=None) -> dict[str, Any]:
    """Run (or resume) a VAE training run; returns the report (also written to ``OUT/report.json``), with
    ``evaluate(vae, held_out_bank)``'s measurements when given (`humo.evaluation.codec.evaluate_round_trip`)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
    t_start = time.perf_counter()
    train_bank = load_clips(cfg.manifest, train=True, limit=cfg.max_clips)
    eval_bank = load_clips(cfg.manifest, train=False, limit=cfg.eval_clips)
    log(f"train-vae: {len(train_bank)} training clips, {len(eval_bank)} held-out clips in memory")

    vae = _fresh_vae(cfg)
    model = vae.model
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    ckpt = out / "checkpoint.pt"
    step = 0
    if ckpt.is_file():
        step, rng = _load_checkpoint(ckpt, model, opt)
        g.bit_generator.state = rng
        log(f"train-vae: resumed at step {step} from {ckpt}")
    log_path = out / "log.jsonl"
    t_last, n_last = time.perf_counter(), step
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, w = sample_batch(train_bank, cfg, g, step)
        parts = vae_loss(model, x, w, cfg.kl_weight, cfg.sample_posterior)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            row = {
                "step": step,
                "loss": float(parts["loss"].detach()),
                "rec": float(parts["rec"]),
                "kl": float(parts["kl"]),
                "lr": lr_at(step - 1, cfg),
                "steps_per_s": (step - n_last) / max(now - t_last, 1e-9),
            }
            t_last, n_last = now, step
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            log(f"train-vae: step {step}/{cfg.steps} rec {row['rec']:.4f} kl {row['kl']:.3g}")
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _save_checkpoint(ckpt, model, opt, step, g)

    model.eval().requires_grad_(False)
    mean, std = latent_statistics(vae, eval_bank)
    vae.set_latent_stats(mean, std)
    final = out / "vae"
    tmp_dir = out / ".vae.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    vae.save_pretrained(tmp_dir)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp_dir, final)
    report = {"steps": step, "seconds": time.perf_counter() - t_start, **(evaluate(vae, eval_bank) if evaluate else {})}
    report["latent_std_mean"] = float(np.mean(std))
    report = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.items()}  # valid JSON
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    ckpt.unlink(missing_ok=True)
    return {**report, "vae": str(final)}


__all__ = [
    "ClipBank",
    "VAETrainConfig",
    "clip_tensor",
    "latent_statistics",
    "load_clips",
    "lr_at",
    "sample_batch",
    "train_vae",
    "vae_loss",
]

"""`humo bench train`: training samples/s of the toy model, fp32 vs bf16 autocast, same steps, same data.

One training step = the stage-2 objective (flow matching + mask loss, audio on, one reference frame) forward and
backward through the DiT, gradient clipping and an AdamW update of the minimal-invasive set (or all weights with
``--trainable full``). Prints samples/s per precision and the ratio bf16 / fp32 (> 1: bf16 is faster).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="toy", help="DiT preset (default toy)")
    parser.add_argument("--batch", type=int, default=2, help="samples per step (default 2)")
    parser.add_argument("--frames", type=int, default=4, help="video latent frames (default 4; +1 reference)")
    parser.add_argument("--size", type=int, default=16, help="latent height = width (default 16)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--trainable", default="minimal", choices=["minimal", "full"])
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--recipe",
        help="time to the quality bars instead: score every kept stage-2 checkpoint of this toy recipe folder "
        "(scripts/train_toy_model.sh) on held-out clips and report the recipe time at the first that passes",
    )
    parser.add_argument("--clips", type=int, default=20, help="--recipe: held-out clips per checkpoint (default 20)")


def synthetic_batch(cfg, batch: int, frames: int, size: int, device):
    """A stage-2 `TrainingBatch` of random tensors shaped like the collate's output (one reference frame)."""
    from humo.data.loader import TrainingBatch

    g = torch.Generator().manual_seed(0)
    c = cfg.out_dim
    return TrainingBatch(
        latents=torch.randn(batch, c, frames, size, size, generator=g),
        refs=torch.randn(batch, c, 1, size, size, generator=g),
        has_ref=torch.ones(batch, dtype=torch.bool),
        text=torch.randn(batch, min(cfg.text_len, 24), cfg.text_dim, generator=g),
        audio=torch.randn(batch, frames, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g),
        has_audio=torch.ones(batch, dtype=torch.bool),
        mask=(torch.rand(batch, frames, size, size, generator=g) > 0.7).float(),
        has_mask=torch.ones(batch, dtype=torch.bool),
        zero_video=torch.zeros(c, frames, size, size),
        tasks=("av",) * batch,
        index=torch.arange(batch),
    ).to(device)


def run(args: argparse.Namespace) -> int:
    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.errors import HumoError
    from humo.training.config import TrainConfig
    from humo.training.distributed import resolve_device
    from humo.training.objective import compute_loss, draw
    from humo.training.trainable import set_trainable, trainable_names

    if args.recipe:
        return time_to_bars(args.recipe, args.clips)
    for name in ("batch", "frames", "size", "steps"):
        if getattr(args, name) < 1:
            raise HumoError(f"--{name} {getattr(args, name)}: must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = dit_preset(args.preset)
    if cfg.mask_head_blocks == 0:
        cfg = cfg.replace(mask_head_blocks=min(4, cfg.num_layers))
    tcfg = TrainConfig(text_dropout=0.1, image_dropout=0.1, audio_dropout=0.1)
    batch = synthetic_batch(cfg, args.batch, args.frames, args.size, device)
    null = torch.zeros(4, cfg.text_dim, device=device)
    tokens = (args.frames + 1) * (args.size // 2) ** 2
    print(
        f"training step: {args.preset} (width {cfg.dim}, {cfg.num_layers} blocks), batch {args.batch}, "
        f"{tokens} tokens/sample, trainable {args.trainable}, {device}, {torch.get_num_threads()} threads"
    )
    results = {}
    for name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        if name not in ("fp32", "bf16"):
            raise HumoError(f"--dtypes {name}: use fp32 and/or bf16")
        torch.manual_seed(0)
        model = HumoDiT(cfg).to(device).train()
        model.gradient_checkpointing = args.checkpointing
        params = set_trainable(model, trainable_names(model, args.trainable, audio=True, mask=True))
        opt = torch.optim.AdamW(params.values(), lr=1e-4)
        gen = torch.Generator().manual_seed(1)
        autocast = torch.bfloat16 if name == "bf16" else None

        def step(model=model, opt=opt, params=params, gen=gen, autocast=autocast):
            d = draw(gen, args.batch, (cfg.out_dim, args.frames + 1, args.size, args.size), tcfg).to(device)
            loss, _ = compute_loss(
                model, batch, d, null, reference_mode=cfg.reference_mode, use_audio=True, mask_weight=0.1,
                autocast_dtype=autocast,
            )  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            opt.step()
            return loss

        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        results[name] = args.batch * args.steps / elapsed
        print(f"{name:5} {results[name]:9.2f} samples/s  ({elapsed / args.steps * 1e3:8.1f} ms/step)")
    if "fp32" in results and "bf16" in results:
        print(f"ratio bf16/fp32 = {results['bf16'] / results['fp32']:.2f} (> 1: bf16 autocast trains faster)")
    return 0


def recipe_seconds(recipe: Path) -> dict[str, float]:
    """Wall seconds of each recipe step (``times.tsv``); stage 2 from its own log when it is still running."""
    out = {}
    tsv = recipe / "times.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            name, _, sec = line.partition("\t")
            out[name] = float(sec)
    return out


def time_to_bars(recipe: str, clips: int) -> int:
    """Score each kept stage-2 checkpoint; the time to the bars is every step before stage 2 plus stage 2's share
    up to that checkpoint (its steps / all stage-2 steps of the stage's wall time)."""
    from humo.errors import HumoError
    from humo.evaluation.ablation import Evaluator, checkpoint_dit, kept_checkpoints

    root = Path(recipe)
    checkpoints = kept_checkpoints(root / "s2")
    if not checkpoints:
        raise HumoError(f"--recipe {root}: no stage-2 checkpoints under s2/checkpoints")
    if clips < 2:
        raise HumoError(f"--clips {clips}: need at least 2")
    times = recipe_seconds(root)
    before = sum(v for k, v in times.items() if k not in ("stage2", "model"))
    total_steps = json.loads((root / "s2" / "config.json").read_text())["steps"]
    s2_seconds = times.get("stage2")
    evaluate = Evaluator(root, clips)
    print(f"recipe {root}: {before:.0f} s before stage 2; stage 2 {s2_seconds or float('nan'):.0f} s")
    print("stage-2 step  recipe time  text  subj-gain  sync-ratio  offset<=1  bars")
    first = None
    for step, folder in checkpoints:
        s = evaluate(checkpoint_dit(folder))
        t = before + (s2_seconds * step / total_steps if s2_seconds else float("nan"))
        ok = all(b["ok"] for b in s["bars"].values())
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(
            f"{step:12d}  {t / 60:9.1f} m  {f(s['text_mean']):>4}  {f(s['subject_gain']):>9}  "
            f"{f(s['sync_ratio']):>10}  {f(s['offset_within_1']):>9}  {'all met' if ok else 'not all'}"
        )
        if ok and first is None:
            first = (step, t)
    if first is None:
        print("time to the quality bars: not reached by the last checkpoint")
    else:
        print(f"time to the quality bars: {first[1] / 60:.1f} min of the recipe (stage-2 step {first[0]})")
    return 0

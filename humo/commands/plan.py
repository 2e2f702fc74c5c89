"""`humo plan`: which generation settings fit a GPU's memory, for a model preset, size and length, before any download
or load: the DiT's weights on the device (by dtype and block swap) plus the activations of the largest batched
pass (`humo.sizing`), for each setting from the fastest to the leanest; the first that fits is recommended."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="humo-17b", help="model preset (default humo-17b; `humo presets`)")
    parser.add_argument("--size", help="480p or 720p (default: the preset's size)")
    parser.add_argument("--frames", type=int, help="video frames, 4k+1 (default: the preset's)")
    parser.add_argument("--seconds", type=float, help="video length in seconds instead of --frames (25 fps)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    parser.add_argument("--gpu-memory", type=float, required=True, metavar="GB", help="the GPU's memory in GB")
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        metavar="N",
        help="GPUs splitting each pass's tokens (sequence parallel, `torchrun --nproc-per-node N`; default 1)",
    )
    parser.add_argument(
        "--reserve",
        type=float,
        default=RESERVE,
        help="share of the memory kept free (default 0.25: the activation estimate ran 20-30%% under a measured peak)",
    )


def settings(num_layers: int, layout_dtype: str):
    """(name, dtype, max_batch, resident) from the fastest to the leanest: all guidance passes batched, then one
    at a time, then fp8 weights, then block swap keeping fewer and fewer blocks (in fp8)."""
    out = [
        (f"{layout_dtype}, guidance batched", None, None, None),
        (f"{layout_dtype}, one guidance pass at a time", None, 1, None),
        ("fp8 weights, guidance batched", "fp8", None, None),
        ("fp8 weights, one pass at a time", "fp8", 1, None),
    ]
    for n in range(num_layers - 1, -1, -1):
        out.append((f"fp8 weights, one pass at a time, block swap keeping {n}", "fp8", 1, n))
    return out


RESERVE = 0.25  # the activation estimate ran 20-30% under a measured peak (tests/test_sizing.py)


@dataclass(frozen=True)
class Setting:
    name: str
    dtype: str | None  # --dtype (None: the model's)
    max_batch: int | None  # --max-batch (None: every guidance pass in one batch)
    resident: int | None  # --offload blocks:N (None: no block swap)
    estimate: object  # sizing.JobEstimate
    fits: bool


def sized_request(layout, height: int, width: int, frames: int | None, steps: int):
    """A resolved text+image+audio request with one reference (the largest mode) of this size; no file is read."""
    import dataclasses

    from humo.pipeline import GenerationRequest

    req = GenerationRequest("plan", height=height, width=width, frames=frames, steps=steps).resolved(layout)
    return dataclasses.replace(req, images=["ref.png"], audio="speech.wav")


def estimates(req, layout, budget_bytes: float, gpus: int = 1) -> list[Setting]:
    """Every setting of `settings`, fastest first, with its estimate for `req` (one GPU's share when `gpus` split
    the tokens) and whether it fits the budget."""
    import dataclasses
    from pathlib import Path

    from humo.commands.generate import bundled_weights, size_job
    from humo.configs import dit_preset

    weights = bundled_weights() if layout.name == "toy" else Path("/nonexistent")  # the releases' VAE: 8x
    out = []
    for name, dtype, max_batch, resident in settings(dit_preset(layout.dit_preset).num_layers, layout.dtype):
        r = dataclasses.replace(req, max_batch=max_batch)
        est = size_job(r, req.frames, layout, weights, dtype, None, None, resident, gpus)[3]
        out.append(Setting(name, dtype, max_batch, resident, est, est.memory_bytes <= budget_bytes))
    return out


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError
    from humo.pipeline import LAYOUTS, SIZES

    if args.preset not in LAYOUTS:
        raise HumoError(f"--preset {args.preset}: unknown (choose from: {', '.join(LAYOUTS)})")
    if not args.gpu_memory > 0:
        raise HumoError(f"--gpu-memory {args.gpu_memory}: must be positive (GB)")
    if not 0 <= args.reserve < 1:
        raise HumoError(f"--reserve {args.reserve}: must be from 0 to below 1")
    layout = LAYOUTS[args.preset]
    if args.gpus < 1:
        raise HumoError(f"--gpus {args.gpus}: must be at least 1")
    if args.gpus > 1:
        from humo.configs import dit_preset
        from humo.sequence_parallel import check_heads

        check_heads(dit_preset(layout.dit_preset).num_heads, args.gpus, f"the {args.preset} DiT")
    height, width = layout.height, layout.width
    if args.size:
        if args.size not in SIZES:
            raise HumoError(f"--size {args.size}: unknown (choose from: {', '.join(SIZES)})")
        height, width = SIZES[args.size]
    frames = args.frames
    if args.seconds is not None:
        from humo.commands.generate import frames_for_seconds

        frames = frames_for_seconds(args.seconds, args.frames)
    req = sized_request(layout, height, width, frames, args.steps)
    each = f"on each of {args.gpus} GPUs of {args.gpu_memory:g} GB" if args.gpus > 1 else f"on {args.gpu_memory:g} GB"
    print(
        f"{args.preset} at {height}x{width}, {req.frames} frames, {args.steps} steps, {each} "
        f"({args.reserve:.0%} kept free): DiT weights on the GPU + activations of the largest pass"
        + (" (its share of the tokens)" if args.gpus > 1 else "")
    )
    chosen = None
    for s in estimates(req, layout, args.gpu_memory * 1e9 * (1 - args.reserve), args.gpus):
        if chosen is not None and s.resident is not None:
            break  # past the first that fits, leaner block-swap settings only repeat the point
        if s.fits and chosen is None:
            chosen = s
        est = s.estimate
        print(
            f"  {s.name:56} weights {est.weight_bytes / 1e9:6.1f} GB + activations {est.activation_bytes / 1e9:5.1f} GB"
            f" = {est.memory_bytes / 1e9:6.1f} GB  {'fits' if s.fits else 'too large'}"
        )
    if chosen is None:
        where = f"{args.gpus} GPUs" if args.gpus > 1 else "one GPU (try --gpus N)"
        print(f"nothing fits on {where}: a smaller --size, or a shorter --segment-frames for a long video")
        return 1
    flags = [
        f"--dtype {chosen.dtype}" if chosen.dtype else "",
        f"--max-batch {chosen.max_batch}" if chosen.max_batch else "",
    ]
    flags.append(f"--offload blocks:{chosen.resident}" if chosen.resident is not None else "")
    launcher = f"torchrun --nproc-per-node {args.gpus} -m humo generate" if args.gpus > 1 else "humo generate"
    print(f"recommended: {launcher} --preset {args.preset} {' '.join(f for f in flags if f)}".rstrip())
    return 0

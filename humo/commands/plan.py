"""`humo plan`: which generation settings fit a GPU's memory, for a model preset, size and length, before any download
or load: the DiT's weights on the device (by dtype and block swap) plus the activations of the largest batched
pass (`humo.sizing`), for each setting from the fastest to the leanest; the first that fits is recommended."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="humo-17b", help="model preset (default humo-17b; `humo presets`)")
    parser.add_argument("--size", help="480p or 720p (default: the preset's size)")
    parser.add_argument("--frames", type=int, help="video frames, 4k+1 (default: the preset's)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    parser.add_argument("--gpu-memory", type=float, required=True, metavar="GB", help="the GPU's memory in GB")
    parser.add_argument(
        "--reserve",
        type=float,
        default=0.25,
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


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from humo.commands.generate import bundled_weights, size_job
    from humo.configs import dit_preset
    from humo.errors import HumoError
    from humo.pipeline import LAYOUTS, SIZES, GenerationRequest

    if args.preset not in LAYOUTS:
        raise HumoError(f"--preset {args.preset}: unknown (choose from: {', '.join(LAYOUTS)})")
    if not args.gpu_memory > 0:
        raise HumoError(f"--gpu-memory {args.gpu_memory}: must be positive (GB)")
    if not 0 <= args.reserve < 1:
        raise HumoError(f"--reserve {args.reserve}: must be from 0 to below 1")
    layout = LAYOUTS[args.preset]
    height, width = layout.height, layout.width
    if args.size:
        if args.size not in SIZES:
            raise HumoError(f"--size {args.size}: unknown (choose from: {', '.join(SIZES)})")
        height, width = SIZES[args.size]
    req = GenerationRequest("plan", height=height, width=width, frames=args.frames, steps=args.steps)
    # sized as text+image+audio with one reference, the largest mode (no file is read)
    req = dataclasses.replace(req.resolved(layout), images=["ref.png"], audio="speech.wav")
    weights = bundled_weights() if args.preset == "toy" else Path("/nonexistent")  # the releases' VAE: 8x
    budget = args.gpu_memory * 1e9 * (1 - args.reserve)
    cfg = dit_preset(layout.dit_preset)
    print(
        f"{args.preset} at {height}x{width}, {req.frames} frames, {args.steps} steps, on {args.gpu_memory:g} GB "
        f"({args.reserve:.0%} kept free): DiT weights on the GPU + activations of the largest pass"
    )
    chosen = None
    for name, dtype, max_batch, resident in settings(cfg.num_layers, layout.dtype):
        if chosen is not None and resident is not None:
            break  # past the first that fits, leaner block-swap settings only repeat the point
        r = dataclasses.replace(req, max_batch=max_batch)
        _, _, _, est = size_job(r, req.frames, layout, weights, dtype, None, None, resident)
        fits = est.memory_bytes <= budget
        if fits and chosen is None:
            chosen = (dtype, max_batch, resident)
        print(
            f"  {name:56} weights {est.weight_bytes / 1e9:6.1f} GB + activations {est.activation_bytes / 1e9:5.1f} GB"
            f" = {est.memory_bytes / 1e9:6.1f} GB  {'fits' if fits else 'too large'}"
        )
    if chosen is None:
        print("nothing fits on one GPU: a smaller --size, or a shorter --segment-frames for a long video")
        return 1
    dtype, max_batch, resident = chosen
    flags = [f"--dtype {dtype}" if dtype else "", f"--max-batch {max_batch}" if max_batch else ""]
    flags.append(f"--offload blocks:{resident}" if resident is not None else "")
    print(f"recommended: humo generate --preset {args.preset} {' '.join(f for f in flags if f)}".rstrip())
    print("(one GPU; sequence parallelism over several is not available yet)")
    return 0

"""`humo bench NAME`: benchmarks that print a ratio against a peer measured in the same run."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "dit": "our DiT forward vs diffusers' WanTransformer3DModel with the same weights (fp32 and bf16)",
    "generate": "time per sampling step, batched vs sequential guidance",
    "vae": "peak memory of chunked VAE decoding, short vs long videos",
    "train": "training samples/s for the toy model, fp32 vs bf16",
    "fp8": "DiT output error of fp8 block weights vs bf16 on the full-width layouts, and their memory",
    "cache": "step caching vs none on a trained model: time, passes run, proving-ground metrics",
    "pose": "the pose guider's training step on floored heatmaps vs raw Gaussians (denormal floats)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(f"humo.bench.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"humo.bench.{name}":
                raise
            continue
        module.configure(p)
        p.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int | None:
    from humo.errors import HumoError

    if not hasattr(args, "_bench_run"):
        raise HumoError(f"benchmark '{args.bench}' is not available in this version")
    return args._bench_run(args)

"""`humo convert IN OUT --to diffusers|humo`: rename a DiT checkpoint between the official (humo) key layout and
diffusers' `WanTransformer3DModel` layout, written as one safetensors file with the config in its metadata.

HuMo's own keys (audio projector, audio cross-attention, mask head) have no diffusers counterpart and keep their names.
"""

from __future__ import annotations

import argparse

DTYPES = {"keep": None, "fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp8": None}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="input checkpoint (any released format)")
    parser.add_argument("dst", help="output .safetensors file")
    parser.add_argument("--to", choices=["diffusers", "humo"], required=True, help="target key layout")
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="keep",
        help="cast floating weights (default: keep); fp8: the blocks' weights in float8 with a scale per channel, "
        "the rest kept (humo layout only)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from humo.checkpoint import (
        METADATA_KEY,
        from_diffusers_keys,
        infer_config,
        is_diffusers_layout,
        read_state_dict,
        save_state_dict,
        to_diffusers_keys,
    )
    from humo.errors import HumoError, check_output

    if not args.dst.endswith(".safetensors"):
        raise HumoError(f"output {args.dst}: must end in .safetensors")
    check_output(args.dst, "output", [args.src], args.overwrite)
    if args.dtype == "fp8":
        if args.to != "humo":
            raise HumoError("--dtype fp8: only with --to humo (diffusers has no fp8 layout for these keys)")
        from humo.checkpoint import load_dit, save_dit
        from humo.fp8 import quantize_dit

        dit = load_dit(args.src)
        n = quantize_dit(dit)
        save_dit(dit, args.dst)
        print(f"wrote {args.dst}: {n} block layers in fp8, humo layout ({dit.cfg.name} structure)")
        return 0
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    sd, meta = read_state_dict(args.src, dtype)
    official = from_diffusers_keys(sd) if is_diffusers_layout(sd) else sd
    cfg = infer_config(official, meta)
    out = to_diffusers_keys(official) if args.to == "diffusers" else official
    layout = "diffusers" if args.to == "diffusers" else "humo"
    save_state_dict(out, args.dst, {METADATA_KEY: json.dumps(cfg.to_dict()), "format": "pt", "layout": layout})
    print(f"wrote {args.dst}: {len(out)} tensors, {layout} layout ({cfg.name} structure)")
    return 0

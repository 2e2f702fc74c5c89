"""`humo inspect PATH`: which preset a checkpoint matches (by keys and shapes), its parameter count and dtype."""

from __future__ import annotations

import argparse
import json
from collections import Counter


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .safetensors, .safetensors.index.json, .pth file or a folder holding one")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def describe(path: str) -> dict:
    """What the checkpoint at `path` is; a HumoError naming the keys when it does not hold every key and shape of
    the layout its shapes point to."""
    import torch

    from humo.checkpoint import (
        from_diffusers_keys,
        infer_config_and_heads,
        is_diffusers_layout,
        match_preset,
        read_shapes,
    )
    from humo.dit import HumoDiT
    from humo.errors import check_keys

    shapes, meta = read_shapes(path)
    layout = "diffusers" if is_diffusers_layout(shapes) else "official"
    if layout == "diffusers":
        shapes = from_diffusers_keys(shapes)
    cfg, heads_known = infer_config_and_heads(shapes, meta)
    with torch.device("meta"):
        expected = HumoDiT(cfg).state_dict()
    check_keys(f"checkpoint {path}: incomplete for its {cfg.name} layout", shapes, expected)
    preset = match_preset(shapes, meta)
    dtypes = Counter()
    for t in shapes.values():
        dtypes[str(t.dtype).replace("torch.", "")] += t.numel()
    return {
        "path": str(path),
        "layout": layout,
        "preset": preset or "none (closest layout: " + cfg.name + ")",
        "parameters": sum(t.numel() for t in shapes.values()),
        "dtype": ", ".join(f"{k} ({v / sum(dtypes.values()):.0%})" for k, v in dtypes.most_common()),
        "audio": cfg.audio,
        "reference_mode": cfg.reference_mode,
        "mask_head_blocks": cfg.mask_head_blocks,
        "heads_known": heads_known,
        "config": cfg.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["config"]
    print(f"{info['path']}")
    print(f"  preset      {info['preset']}")
    print(f"  layout      {info['layout']} key names")
    print(f"  parameters  {info['parameters']:,} ({info['parameters'] / 1e9:.2f}B)")
    print(f"  dtype       {info['dtype']}")
    heads = c["num_heads"] if info["heads_known"] else "unknown (the shapes do not tell; pass a config)"
    print(
        f"  shape       dim {c['dim']}, ffn {c['ffn_dim']}, layers {c['num_layers']}, heads {heads}, "
        f"in {c['in_dim']} -> out {c['out_dim']}"
    )
    print(
        f"  HuMo        audio {'yes' if info['audio'] else 'no'}, references {info['reference_mode']}, "
        f"mask head {info['mask_head_blocks'] or 'no'}"
    )
    return 0

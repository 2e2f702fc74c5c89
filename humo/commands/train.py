"""`humo train`: one stage of progressive HuMo training from a config file plus ``--set KEY=VALUE`` overrides.

    humo train --config cfg.json --set stage=2 --set lr=1e-4
    humo train --config cfg.json --omni 2 --set init=runs/o1/final/ema.safetensors  # OmniHuman-1's stage 2
    torchrun --nproc_per_node 8 -m humo train --config cfg.json     # data-parallel on 8 GPUs

See docs/training.md for the recipe (stage 0 -> 1 -> 2), every config field and the launch commands.
"""

from __future__ import annotations

import argparse
import json
import os


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.commands import add_set_flag

    parser.add_argument("--config", help="training config (.json or .toml); fields not given keep their defaults")
    add_set_flag(
        parser,
        "override a config field (repeatable); VALUE is JSON when it parses (2, 1e-4, true, [0.9,0.99]), "
        "else a string; dotted keys reach into dicts (model_overrides.num_layers=4)",
    )
    parser.add_argument(
        "--omni",
        type=int,
        metavar="N",
        help="train stage N of OmniHuman-1's omni-condition schedule (1 text + reference, 2 + audio, 3 + pose): its "
        "fields go over --config, --set over them (docs/training.md, 'Omni-condition training')",
    )
    parser.add_argument(
        "--omni-preset", metavar="FILE", help="the schedule for --omni (default configs/omnihuman.json)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def run(args: argparse.Namespace) -> int:
    from humo.training.config import load_config

    layers = []
    if args.omni is not None:
        from humo.training.omni import load_schedule, stage_fields

        layers.append(stage_fields(load_schedule(args.omni_preset), args.omni))
    cfg = load_config(args.config, args.overrides, layers)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    from humo.training.loop import train

    summary = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        print(f"trained {summary['steps']} steps; final loss {summary['loss']}; EMA export {summary['export']}")
    return 0

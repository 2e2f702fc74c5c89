"""`humo ablate`: rerun HuMo's ablations and guidance claims in the proving ground (docs/ablations.md).

    humo ablate --recipe runs/toy-recipe --out runs/ablate                 # the whole study, resumable
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0,1 --jobs 2  # two seeds side by side
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0 --variants full,no-mask --s2-steps 200
    humo ablate --study configs/ablate-v2.json --out runs/ablate-v2      # a study preset; flags override it

It needs the toy recipe's outputs (scripts/train_toy_model.sh: the cache, the stage-0 backbone, the model folder
and the held-out clips). Results: OUT/results.json, OUT/ablation.md and OUT/curves.png.
"""

from __future__ import annotations

import argparse


def _ints(text: str) -> list[int]:
    from humo.errors import HumoError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HumoError(f"--seeds {text!r}: expected comma-separated integers") from None


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.evaluation.ablation import StudyConfig

    d = StudyConfig()
    parser.add_argument(
        "--study",
        metavar="FILE",
        help="a JSON study preset: StudyConfig fields (e.g. configs/ablate-v2.json); the flags given override it",
    )
    parser.add_argument("--recipe", default=d.recipe, help=f"toy recipe folder (default {d.recipe})")
    parser.add_argument("--out", default=d.out, help=f"study folder (default {d.out})")
    parser.add_argument("--config", default=d.train_config, help=f"base training config (default {d.train_config})")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--variants", default=",".join(d.variants), help="variants (default: all)")
    parser.add_argument("--s1-steps", type=int, default=d.s1_steps, help=f"stage-1 steps (default {d.s1_steps})")
    parser.add_argument("--s2-steps", type=int, default=d.s2_steps, help=f"stage-2 steps (default {d.s2_steps})")
    parser.add_argument("--curve-points", type=int, default=d.curve_points, help="evaluated checkpoints per run")
    parser.add_argument("--eval-clips", type=int, default=d.eval_clips, help=f"held-out clips (default {d.eval_clips})")
    parser.add_argument("--eval-steps", type=int, default=d.eval_steps, help="sampling steps per evaluation")
    parser.add_argument(
        "--jobs",
        type=int,
        default=d.jobs,
        help="worker processes running the seeds side by side, the cores split between them (default 1)",
    )
    parser.add_argument("--no-guidance", action="store_true", help="skip the inference-time guidance study")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training-config field for every run (e.g. batch_size=4)",
    )


def _given(args: argparse.Namespace, parser_defaults: dict) -> dict:
    """The flags set on the command line (those whose value is not their default), as StudyConfig fields."""
    from humo.training.config import parse_override

    def changed(name):
        return getattr(args, name) != parser_defaults[name]

    fields = {
        "recipe": ("recipe", lambda v: v),
        "out": ("out", lambda v: v),
        "config": ("train_config", lambda v: v),
        "seeds": ("seeds", _ints),
        "variants": ("variants", lambda v: [x.strip() for x in v.split(",") if x.strip()]),
        "s1_steps": ("s1_steps", int),
        "s2_steps": ("s2_steps", int),
        "curve_points": ("curve_points", int),
        "eval_clips": ("eval_clips", int),
        "eval_steps": ("eval_steps", int),
        "jobs": ("jobs", int),
    }
    given = {field: convert(getattr(args, name)) for name, (field, convert) in fields.items() if changed(name)}
    if args.no_guidance:
        given["guidance"] = False
    if args.overrides:
        given["train_overrides"] = dict(parse_override(o) for o in args.overrides)
    return given


def study_config(args: argparse.Namespace, parser_defaults: dict):
    """The StudyConfig of a command line: the preset file's fields (if any), then the flags given."""
    import json
    from pathlib import Path

    from humo.errors import HumoError
    from humo.evaluation.ablation import StudyConfig

    data: dict = {}
    if args.study:
        path = Path(args.study)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HumoError(f"--study {path}: no such file") from None
        except (OSError, ValueError) as e:
            raise HumoError(f"--study {path}: not a readable JSON file ({e})") from None
        known = set(StudyConfig.__dataclass_fields__)
        unknown = sorted(set(data) - known) if isinstance(data, dict) else None
        if unknown is None:
            raise HumoError(f"--study {path}: expected a JSON object of study fields")
        if unknown:
            raise HumoError(f"--study {path}: unknown fields {unknown} (known: {', '.join(sorted(known))})")
    given = _given(args, parser_defaults)
    if "train_overrides" in given:  # --set adds to the preset's overrides rather than replacing them
        given["train_overrides"] = {**data.get("train_overrides", {}), **given["train_overrides"]}
    return StudyConfig(**{**data, **given})


def run(args: argparse.Namespace) -> int:
    import argparse as _argparse

    from humo.evaluation.ablation import run_study

    defaults_parser = _argparse.ArgumentParser()
    configure(defaults_parser)
    cfg = study_config(args, vars(defaults_parser.parse_args([])))
    results = run_study(cfg)
    print(
        f"study finished in {results['seconds']:.0f} s; tables in {cfg.out}/ablation.md, plots in {cfg.out}/curves.png"
    )
    return 0

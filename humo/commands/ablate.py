"""`humo ablate`: rerun HuMo's ablations and guidance claims in the proving ground (docs/ablations.md).

    humo ablate --recipe runs/toy-recipe --out runs/ablate                 # the whole study, resumable
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0,1 --jobs 2  # two seeds side by side
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0 --variants full,no-mask --s2-steps 200

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


def run(args: argparse.Namespace) -> int:
    from humo.evaluation.ablation import StudyConfig, run_study
    from humo.training.config import parse_override

    cfg = StudyConfig(
        recipe=args.recipe,
        out=args.out,
        train_config=args.config,
        seeds=_ints(args.seeds),
        variants=[v.strip() for v in args.variants.split(",") if v.strip()],
        s1_steps=args.s1_steps,
        s2_steps=args.s2_steps,
        curve_points=args.curve_points,
        eval_clips=args.eval_clips,
        eval_steps=args.eval_steps,
        guidance=not args.no_guidance,
        jobs=args.jobs,
        train_overrides=dict(parse_override(o) for o in args.overrides),
    )
    results = run_study(cfg)
    print(
        f"study finished in {results['seconds']:.0f} s; tables in {cfg.out}/ablation.md, plots in {cfg.out}/curves.png"
    )
    return 0

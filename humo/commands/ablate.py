"""`humo ablate`: rerun HuMo's ablations and guidance claims in the proving ground (docs/ablations.md).

    humo ablate --recipe runs/toy-recipe --out runs/ablate                 # the whole study, resumable
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0,1 --jobs 2  # two seeds side by side
    humo ablate --recipe runs/toy-recipe --out runs/ablate --seeds 0 --variants full,no-mask --s2-steps 200
    humo ablate --study configs/ablate-v2.json --out runs/ablate-v2      # a study preset; flags override it
    humo ablate --study configs/ablate-v4.json --report --out /tmp/v4    # the tables of the runs finished so far

It needs the toy recipe's outputs (scripts/train_toy_model.sh: the cache, the stage-0 backbone, the model folder
and the held-out clips). Results: OUT/results.json, OUT/ablation.md and OUT/curves.png.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.evaluation.ablation import VARIANTS, StudyConfig, add_study_flags, name_list, number_list

    d = StudyConfig()
    parser.add_argument(
        "--study",
        metavar="FILE",
        help="a JSON study preset: StudyConfig fields (e.g. configs/ablate-v2.json); the flags given override it",
    )
    parser.add_argument("--recipe", help=f"toy recipe folder (default {d.recipe})")
    parser.add_argument("--out", help=f"study folder (default {d.out})")
    parser.add_argument(
        "--backbone-steps",
        type=int,
        help="text-to-video steps continuing the recipe's stage 0 before the variants (default 0: the recipe's as is)",
    )
    parser.add_argument("--config", help=f"base training config (default {d.train_config})")
    parser.add_argument("--seeds", type=number_list(int), help="training seeds (default 0,1,2)")
    parser.add_argument(
        "--variants",
        type=name_list,
        help=f"variants (default: the paper's, {','.join(d.variants)}; also "
        f"{', '.join(v for v in VARIANTS if v not in d.variants)})",
    )
    parser.add_argument("--s1-steps", type=int, help=f"stage-1 steps (default {d.s1_steps})")
    parser.add_argument("--s2-steps", type=int, help=f"stage-2 steps (default {d.s2_steps})")
    parser.add_argument("--curve-points", type=int, help=f"evaluated checkpoints per run (default {d.curve_points})")
    parser.add_argument("--eval-clips", type=int, help=f"held-out clips (default {d.eval_clips})")
    parser.add_argument("--eval-steps", type=int, help=f"sampling steps per evaluation (default {d.eval_steps})")
    parser.add_argument(
        "--jobs",
        type=int,
        help="worker processes running the seeds side by side, the cores split between them (default 1)",
    )
    parser.add_argument(
        "--ledger",
        help="folder kept with the code where each finished run's record and scores go, so that the study resumes "
        "on another machine (default: none)",
    )
    parser.add_argument("--no-guidance", action="store_true", help="skip the inference-time guidance study")
    parser.add_argument(
        "--guidance-variant",
        help=f"the variant whose final model the guidance study samples (default {d.guidance_variant})",
    )
    parser.add_argument(
        "--guidance-strength",
        type=float,
        help="every guidance case's scales moved to 1 + STRENGTH * (scale - 1) (default 1: the paper's scales)",
    )
    add_study_flags(parser)


def study_config(args: argparse.Namespace):
    """The StudyConfig of a command line: the --study file's fields (if any), then the flags given."""
    from humo.evaluation.ablation import StudyConfig, study_from_args

    return study_from_args(args, StudyConfig, **({"guidance": False} if args.no_guidance else {}))


def run(args: argparse.Namespace) -> int:
    from humo.evaluation.ablation import run_study, run_study_command

    return run_study_command(study_config(args), run_study, args.report, "ablation.md", "curves.png")

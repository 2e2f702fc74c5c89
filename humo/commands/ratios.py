"""`humo ratios`: OmniHuman-1's condition-ratio experiments in the proving ground (docs/training.md,
"Omni-condition training").

    humo ratios --recipe runs/toy-recipe --out runs/ratios                        # the whole study, resumable
    humo ratios --recipe runs/toy-recipe --out runs/ratios --seeds 0 --s2-steps 200  # a first pass
    humo ratios --study study.json                                               # RatioStudyConfig fields

It needs the toy recipe's outputs (scripts/train_toy_model.sh: the cache, the stage-0 backbone, the model folder
and the held-out clips). Results: OUT/results.json, OUT/ratios.md, OUT/curves-audio.png, OUT/curves-pose.png.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.evaluation.ablation import number_list
    from humo.evaluation.ratio_study import RatioStudyConfig

    d = RatioStudyConfig()
    types = {"seeds": number_list(int), "audio_ratios": number_list(float), "pose_ratios": number_list(float),
             "pose_audio_ratio": float, "audio_base": float, "image_ratio": float, "s1_steps": int, "s2_steps": int,
             "s3_steps": int, "curve_points": int,
             "eval_clips": int, "eval_steps": int}  # fmt: skip
    parser.add_argument("--study", metavar="FILE", help="a JSON of RatioStudyConfig fields; the flags override it")
    helps = {
        "recipe": f"toy recipe folder (default {d.recipe})",
        "out": f"study folder (default {d.out})",
        "config": f"base training config (default {d.train_config})",
        "schedule": "omni-condition schedule (default configs/omnihuman.json)",
        "seeds": "training seeds (default 0,1,2)",
        "audio_ratios": "stage-2 audio ratios (default 0.1,0.5,1)",
        "pose_ratios": "stage-3 pose ratios (default 0.2,0.5,0.8)",
        "pose_audio_ratio": f"the pose runs' audio ratio, one of the audio ratios (default {d.pose_audio_ratio})",
        "audio_base": f"the audio ratio the other audio rows are compared with (default {d.audio_base})",
        "image_ratio": f"the reference's ratio in the stage-2 and -3 runs, of the samples with text (default "
        f"{d.image_ratio:g}: every one, so that a run's ratio is its share of the conditioned samples)",
        "s1_steps": f"stage-1 steps (default {d.s1_steps})",
        "s2_steps": f"stage-2 (+ audio) steps (default {d.s2_steps})",
        "s3_steps": f"stage-3 (+ pose) steps (default {d.s3_steps})",
        "curve_points": f"evaluated checkpoints per run (default {d.curve_points})",
        "eval_clips": f"held-out clips (default {d.eval_clips})",
        "eval_steps": f"sampling steps per evaluation (default {d.eval_steps})",
        "ledger": "folder kept with the code for each finished run's record and scores, to resume on another "
        "machine (default: none)",
    }
    for name, text in helps.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, type=types.get(name, str), help=text
        )
    parser.add_argument(
        "--report",
        action="store_true",
        help="write the tables and curves of the runs finished so far (the ledger's and the run folder's) and "
        "train or score nothing: a study's progress, from a clone without the recipe or any weights",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training-config field for every run (e.g. batch_size=4, model_overrides.in_dim=24)",
    )


def study_config(args: argparse.Namespace):
    """The RatioStudyConfig of a command line: the --study file's fields (if any), then the flags given."""
    from humo.evaluation.ablation import study_from_args
    from humo.evaluation.ratio_study import RatioStudyConfig

    return study_from_args(args, RatioStudyConfig)


def run(args: argparse.Namespace) -> int:
    from humo.evaluation.ratio_study import run_study

    cfg = study_config(args)
    results = run_study(cfg, report=args.report)
    if args.report:
        done, planned = len(results["runs"]), results["planned_runs"]
        print(f"{done} of {planned} runs finished; tables in {cfg.out}/ratios.md")
        return 0
    print(
        f"study finished in {results['seconds']:.0f} s; tables in {cfg.out}/ratios.md, curves in {cfg.out}/curves-*.png"
    )
    return 0

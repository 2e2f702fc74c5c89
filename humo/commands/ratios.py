"""`humo ratios`: OmniHuman-1's condition-ratio experiments in the proving ground (docs/training.md,
"Omni-condition training").

    humo ratios --recipe runs/toy-recipe --out runs/ratios                        # the whole study, resumable
    humo ratios --recipe runs/toy-recipe --out runs/ratios --seeds 0 --s2-steps 200  # a first pass
    humo ratios --study study.json                                               # RatioStudyConfig fields
    humo ratios --study study.json --report --out /tmp/r                         # its tables so far

It needs the toy recipe's outputs (scripts/train_toy_model.sh: the cache, the stage-0 backbone, the model folder
and the held-out clips). Results: OUT/results.json, OUT/ratios.md, OUT/curves-audio.png, OUT/curves-pose.png.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.evaluation.ablation import add_study_flags, number_list
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
    add_study_flags(parser)


def study_config(args: argparse.Namespace):
    """The RatioStudyConfig of a command line: the --study file's fields (if any), then the flags given."""
    from humo.evaluation.ablation import study_from_args
    from humo.evaluation.ratio_study import RatioStudyConfig

    return study_from_args(args, RatioStudyConfig)


def run(args: argparse.Namespace) -> int:
    from humo.evaluation.ablation import run_study_command
    from humo.evaluation.ratio_study import run_study

    return run_study_command(study_config(args), run_study, args.report, "ratios.md", "curves-*.png")

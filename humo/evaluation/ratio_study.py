"""OmniHuman-1's condition-ratio experiments, rerun in the proving ground: `humo ratios`.

The paper (arXiv 2502.01061) trains with audio ratios of 10%, 50% and 100% (its Table 3 and Fig. 3) and pose
ratios of 20%, 50% and 80% tested with audio alone (its Figs. 4-5). Its claims: too high an audio ratio costs text
following and identity, too low an audio ratio costs lip sync; a high pose ratio makes the model lean on the pose,
so that driven by audio alone it syncs worse.

Every run is a stage of the omni-condition schedule (``configs/omnihuman.json``, `humo.training.omni`) with one
ratio changed, trained by the one trainer from the toy recipe's stage-0 backbone, per seed:

=============  =====================================  ==========================================
run            schedule stage                         starts from
=============  =====================================  ==========================================
s1             1: text + reference                    the recipe's backbone
audio <r>%     2: + audio, audio ratio r              s1
pose <r>%      3: + pose (a pose guider), pose ratio  the audio run at `pose_audio_ratio`
               r, audio ratio `pose_audio_ratio`
=============  =====================================  ==========================================

A ratio is the paper's: the share of the conditioned training samples that train with the condition (audio 100%:
every one). The schedule's ratios are each relative to the next weaker condition (`objective.nested_thresholds`),
and its stages keep the reference in half of the samples with text, so that its audio 100% would be 45% of them.
The study's stage-2 and -3 runs therefore keep the reference in every sample with text (`image_ratio` 1), and the
pose runs keep the audio in every one (`pose_audio_ratio` 1): a run's ratio is then its share of the samples with
text, which are all but the null passes of guidance (the text ratio's 10%). The tables give each run's shares of
all training samples (`training_shares`).

The pose runs train on the proving ground's pose tracks (cached by ``humo precompute`` from the clips' face-mask
files) and are scored without a pose: the Evaluator gives the held-out clips' caption, reference and audio only.

The study machinery is `humo ablate`'s (`humo.evaluation.ablation`): resumable runs (`train_run`), every kept
checkpoint scored on held-out clips (`Evaluator`, cached per checkpoint), differences paired by seed, a `verdict`
per claim, mean ± std tables and PNG curves. Results: ``OUT/results.json``, ``OUT/ratios.md``,
``OUT/curves-audio.png`` and ``OUT/curves-pose.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humo.errors import HumoError, atomic_path
from humo.evaluation.ablation import (
    Claim,
    Evaluator,
    _difference_table,
    _mean_table,
    _training_time_lines,
    check_recipe,
    claims_table,
    field_type_problems,
    plot_curves,
    recipe_backbone,
    train_and_score,
    verdicts,
)
from humo.evaluation.ledger import progress_lines, provenance_lines

GROUPS = ("audio", "pose")


def row_name(group: str, ratio: float) -> str:
    """The table row of a run: ``audio 10%``."""
    return f"{group} {ratio * 100:g}%"


@dataclass
class RatioStudyConfig:
    """A `humo ratios` study. `recipe`: the folder `scripts/train_toy_model.sh` wrote (cache/, s0/, model/, data/).

    schedule: the omni-condition schedule whose stages the runs train (None: ``configs/omnihuman.json``);
    audio_ratios: stage 2's audio ratios; pose_ratios: stage 3's pose ratios, each at the audio ratio
    `pose_audio_ratio` (one of audio_ratios: that run is where the pose runs start)."""

    recipe: str = "runs/toy-recipe"
    out: str = "runs/ratios"
    train_config: str = "configs/toy.json"
    schedule: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    audio_ratios: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    pose_ratios: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8])
    pose_audio_ratio: float = 1.0
    audio_base: float = 0.5  # the audio run the other audio runs' differences are taken from
    image_ratio: float = 1.0  # the reference's ratio in the stage-2 and -3 runs (relative to text's)
    s1_steps: int = 300
    s2_steps: int = 600
    s3_steps: int = 600
    curve_points: int = 3
    eval_clips: int = 12
    eval_steps: int = 20
    train_overrides: dict = field(default_factory=dict)  # extra TrainConfig fields for every run
    ledger: str | None = None  # where finished runs are recorded to resume on another machine (`humo ablate`'s)

    def __post_init__(self) -> None:
        problems = field_type_problems(self)
        if problems:  # before the checks below, which compare numbers
            raise HumoError("ratios: " + "; ".join(problems))
        if not self.seeds:
            problems.append("seeds: need at least one")
        for name in ("audio_ratios", "pose_ratios"):
            values = getattr(self, name)
            if not values or any(not 0.0 <= r <= 1.0 for r in values) or len(set(values)) != len(values):
                problems.append(f"{name} {values}: need distinct ratios in [0, 1]")
        if 0.0 in self.pose_ratios:
            problems.append("pose_ratios: 0 trains no pose stage (its conditions would not grow)")
        if self.pose_ratios and self.pose_audio_ratio not in self.audio_ratios:
            problems.append(f"pose_audio_ratio {self.pose_audio_ratio}: must be one of audio_ratios (the pose runs "
                            "start from that audio run)")  # fmt: skip
        if self.audio_base not in self.audio_ratios:
            problems.append(f"audio_base {self.audio_base}: must be one of audio_ratios")
        if not 0.0 < self.image_ratio <= 1.0:
            problems.append(f"image_ratio {self.image_ratio}: must be in (0, 1]")
        for name in ("s1_steps", "s2_steps", "s3_steps", "curve_points", "eval_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} {getattr(self, name)}: must be >= 1")
        if self.eval_clips < 2:
            problems.append(f"eval_clips {self.eval_clips}: need at least 2 (the baselines pair clips)")
        if self.curve_points > min(self.s2_steps, self.s3_steps):
            problems.append(f"curve_points {self.curve_points}: more than the steps of a stage-2 or -3 run")
        if problems:
            raise HumoError("ratios: " + "; ".join(problems))

    @property
    def recipe_path(self) -> Path:
        return Path(self.recipe)

    def base(self, group: str) -> float:
        """The ratio each group's differences are taken from: `audio_base`, the lowest pose ratio."""
        return self.audio_base if group == "audio" else min(self.pose_ratios)


def claims(cfg: RatioStudyConfig) -> tuple[Claim, ...]:
    """The paper's claims, each the sign of one paired difference of `cfg`'s rows."""
    base, low, high = row_name("audio", cfg.base("audio")), min(cfg.audio_ratios), max(cfg.audio_ratios)
    out = []
    if high > cfg.base("audio"):
        row = f"{row_name('audio', high)} - {base}"
        out += [
            Claim("too high an audio ratio hurts text following (Table 3, Fig. 3)", row, "text_mean", -1),
            Claim("too high an audio ratio hurts identity (Table 3, Fig. 3)", row, "subject_gain", -1),
        ]
    if low < cfg.base("audio"):
        out.append(Claim("too low an audio ratio hurts lip sync (Table 3)", f"{row_name('audio', low)} - {base}",
                         "sync_c", -1))  # fmt: skip
    if len(cfg.pose_ratios) > 1:
        row = f"{row_name('pose', max(cfg.pose_ratios))} - {row_name('pose', min(cfg.pose_ratios))}"
        out.append(Claim("a high pose ratio makes audio-only driving sync worse (Figs. 4-5)", row, "sync_c", -1))
    return tuple(out)


def plan(cfg: RatioStudyConfig) -> list[dict[str, Any]]:
    """Every training run of the study, in order (each after the run it starts from).

    A run's "offset" is the number of steps trained after the backbone before it starts, so that the curves share
    one axis: steps after the stage-0 backbone."""
    from humo.training.omni import load_schedule, stage_fields

    schedule = load_schedule(cfg.schedule)
    if len(schedule) < 3:
        raise HumoError(f"ratios: the schedule has {len(schedule)} stages; the study needs 3 (+ audio, + pose)")
    root = Path(cfg.out) / "train"
    backbone = str(recipe_backbone(cfg.recipe_path))

    def export(name: str) -> str:
        return str(root / name / "final" / "ema.safetensors")

    def curve(steps: int) -> dict:
        return {"steps": steps, "checkpoint_every": max(1, steps // cfg.curve_points), "keep_checkpoints": 0}

    runs = []
    for seed in cfg.seeds:
        s1 = f"s1-seed{seed}"
        runs.append({"name": s1, "group": None, "variant": None, "seed": seed, "out": root / s1, "offset": 0,
                     "overrides": {**stage_fields(schedule, 1), "steps": cfg.s1_steps, "init": backbone}})  # fmt: skip
        for r in cfg.audio_ratios:
            name = f"audio-{r * 100:g}-seed{seed}"
            runs.append({"name": name, "group": "audio", "variant": row_name("audio", r), "seed": seed,
                         "out": root / name, "offset": cfg.s1_steps,
                         "overrides": {**stage_fields(schedule, 2, image=cfg.image_ratio, audio=r),
                                       **curve(cfg.s2_steps), "init": export(s1)}})  # fmt: skip
        start = export(f"audio-{cfg.pose_audio_ratio * 100:g}-seed{seed}")
        for r in cfg.pose_ratios:
            name = f"pose-{r * 100:g}-seed{seed}"
            fields = stage_fields(schedule, 3, image=cfg.image_ratio, audio=cfg.pose_audio_ratio, pose=r)
            runs.append({"name": name, "group": "pose", "variant": row_name("pose", r), "seed": seed,
                         "out": root / name, "offset": cfg.s1_steps + cfg.s2_steps,
                         "overrides": {**fields, **curve(cfg.s3_steps), "init": start}})  # fmt: skip
    return runs


def run_study(cfg: RatioStudyConfig, log: Callable[[str], None] = print, report: bool = False) -> dict[str, Any]:
    """Train, evaluate, tabulate and plot the whole study (resumable: finished runs and evaluations are skipped,
    interrupted runs resume from their last checkpoint) -> the results dict.

    report: train and score nothing; tabulate and plot the runs finished so far (the ledger's and the run
    folder's), which needs neither the recipe nor any weights."""
    if not report:
        check_recipe(cfg.recipe_path, cfg.train_config, "ratios")
    # the pose runs come last, hours in: find out now whether they would see a pose at all
    if cfg.pose_ratios and not report:
        from humo.data.loader import LatentCache

        cache = LatentCache(cfg.recipe_path / "cache")
        if not any(e.get("pose") for e in cache.samples):
            raise HumoError(
                f"ratios: the pose runs need pose keypoints, and no sample of {cache.root} has them (a cache "
                "written before precompute kept them): run humo precompute on the recipe's clips again, or pass "
                "--pose-ratios ''"
            )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not report:
        with atomic_path(out / "study.json") as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    t_start = time.perf_counter()
    evaluator = Evaluator(cfg.recipe_path, cfg.eval_clips, cfg.eval_steps)
    runs = plan(cfg)
    # audio only: the Evaluator gives the held-out clips' caption, reference and audio, never a pose
    scores, records = train_and_score(cfg, runs, evaluator, log, "ratios", report=report)
    curves: dict[str, dict[str, dict[int, dict[int, dict]]]] = {g: {} for g in GROUPS}
    for run in runs:
        for step, summary in scores[run["name"]].items():
            points = curves[run["group"]].setdefault(run["variant"], {}).setdefault(run["seed"], {})
            points[run["offset"] + step] = summary
    final = {g: {v: {s: pts[max(pts)] for s, pts in seeds.items()} for v, seeds in curves[g].items()} for g in GROUPS}
    results = {
        "config": dataclasses.asdict(cfg),
        "curves": curves,
        "final": final,
        "claims": verdicts(
            claims(cfg), {**final["audio"], **final["pose"]}, versus(cfg), cfg.eval_clips, seeds=len(cfg.seeds)
        ),
        "training_seconds": {name: rec["training_seconds"] for name, rec in records.items()},
        "runs": records,
        "planned_runs": len(runs),
        "seconds": time.perf_counter() - t_start,  # this invocation's (a resumed study's last part)
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    with atomic_path(out / "ratios.md") as tmp:
        tmp.write_text(format_tables(results, cfg))
    for g in GROUPS:
        plot_curves(_from_start(curves, g, cfg), out / f"curves-{g}.png")
    return results


def _from_start(curves: dict, group: str, cfg: RatioStudyConfig) -> dict:
    """The group's curves for plotting, each pose run's beginning with the score of the model it starts from (the
    base audio run's last point, per seed); the audio runs start from stage 1, which is not scored."""
    if group != "pose":
        return curves[group]
    base = curves["audio"].get(row_name("audio", cfg.pose_audio_ratio), {})
    x = cfg.s1_steps + cfg.s2_steps
    return {
        v: {sd: ({x: base[sd][x]} if x in base.get(sd, {}) else {}) | pts for sd, pts in seeds.items()}
        for v, seeds in curves["pose"].items()
    }


def versus(cfg: RatioStudyConfig) -> dict[str, str]:
    """Each row -> the row its paired differences are taken from (`RatioStudyConfig.base`)."""
    out = {}
    for g, ratios in (("audio", cfg.audio_ratios), ("pose", cfg.pose_ratios)):
        out.update({row_name(g, r): row_name(g, cfg.base(g)) for r in ratios if r != cfg.base(g)})
    return out


def training_shares(cfg: RatioStudyConfig) -> dict[str, dict[str, float]]:
    """Each row -> the share of all its training samples that keep each condition (`objective.nested_thresholds`
    of the run's ratios), conditions that never train left out."""
    from humo.training.objective import nested_thresholds

    out = {}
    for run in plan(dataclasses.replace(cfg, seeds=cfg.seeds[:1])):
        if run["variant"] is not None:
            shares = nested_thresholds(run["overrides"]["condition_ratios"])
            out[run["variant"]] = {m: v for m, v in shares.items() if v > 0}
    return out


def format_tables(results: dict[str, Any], cfg: RatioStudyConfig) -> str:
    """Markdown: per group the final checkpoints (mean ± std over seeds) and their paired differences from the
    group's base row, then the claims with their verdicts."""
    c = results["config"]
    lines = [
        *progress_lines(results),
        f"Mean ± standard deviation over seeds {c['seeds']}; {c['eval_clips']} held-out clips per evaluation, "
        f"{c['eval_steps']} sampling steps, driven by caption, reference and audio (no pose).",
        *_training_time_lines(results.get("training_seconds") or {}, lambda name: name.split("-")[0] + " runs"),
    ]
    titles = {"audio": "audio ratio (stage 2: + audio)", "pose": f"pose ratio (stage 3: + pose, audio "
              f"{cfg.pose_audio_ratio * 100:g}%)"}  # fmt: skip
    names = {"text": "text", "image": "reference", "audio": "audio", "pose": "pose"}
    shares = training_shares(cfg)
    for g in GROUPS:
        rows = results["final"].get(g) or {}
        if rows:
            lines += _mean_table(titles[g], rows)
            kept = [f"{row}: " + ", ".join(f"{names[m]} {v * 100:.3g}%" for m, v in shares[row].items())
                    for row in rows if row in shares]  # fmt: skip
            lines += ["", "Share of all training samples with each condition (those without text are the null passes "
                      f"of guidance): {'; '.join(kept)}."]  # fmt: skip
            lines += _difference_table(rows, {k: v for k, v in versus(cfg).items() if k in rows})
    lines += claims_table(results["claims"])
    lines += provenance_lines(results.get("runs") or {})
    return "\n".join(lines) + "\n"

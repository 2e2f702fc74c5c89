"""HuMo's ablations and guidance claims, rerun in the proving ground: `humo ablate`.

Training variants (the paper's Table 3), each a set of `TrainConfig` overrides of the one trainer, all starting
from the recipe's stage-0 backbone (``RECIPE/s0/final/ema.safetensors``, shared by every variant and seed):

==============  ==========================================  ===========================================
variant         stage 1 (text + image)                      stage 2 (+ audio)
==============  ==========================================  ===========================================
full            minimal-invasive (self-attention)           minimal + audio + mask head, av 20% -> 50%
full-finetune   every weight                                every weight, mask head, av 20% -> 50%
single-stage    (none)                                      both tasks from the start at 50% av
no-mask         minimal-invasive                            as full, without the mask head
minimal-ffn     minimal-invasive                            as full, the FFNs trained too (a diagnostic)
==============  ==========================================  ===========================================

The first four are the paper's Table 3 and a study's default; ``minimal-ffn`` is ours, asked for by name: it tells
whether the frozen feed-forward layers are what keeps ``full`` from learning lip sync on the toy backbone
(docs/ablations.md, "Study v3").

Seeds change stage 1 and 2 (model init of the added modules, sample order, noise, dropout). ``full`` and
``no-mask`` share their stage-1 run per seed (it is the same run). Every stage-2 run keeps `curve_points`
checkpoints; each is scored on held-out identities (`heldout.evaluate_model`) for the curves, the last one for
the table. At inference, on the ``full`` model of every seed: the paper's stage-adaptive CFG (switch at
t = 0.98), static CFG, a sweep of the switch, and static CFG without each modality's guidance term (its scale
set to 1, so the condition stays but is not amplified).

Everything is resumable: finished runs and evaluations are skipped, interrupted runs resume from their last
checkpoint. Results: ``OUT/results.json``, ``OUT/ablation.md`` (the tables) and ``OUT/curves.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humo.errors import HumoError, atomic_path, read_json_file
from humo.evaluation.heldout import mean_spread
from humo.evaluation.ledger import Ledger, config_differences, progress_lines, provenance_lines, runs_to_train


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    stage1: dict | None  # stage-1 overrides; None: no stage 1 (stage 2 starts from the backbone)
    stage2: dict
    versus: str | None = "full"  # the variant it differs from by one choice (its paired differences are from it)


# OmniHuman-1's reference positional encoding (the reference frames' RoPE time index 0, where HuMo continues after the
# last video frame), in the recipe's own setting (every weight trained): one choice away from `full-finetune`.
_ROPE_ZERO = {"trainable": "full", "model_overrides": {"reference_rope": "zero"}}
# InterActHuman's remedy for copy-paste (and HuMo's data practice): references shown in training cropped at random to
# the head, the upper body or the clothing, in the recipe's own setting; needs a cache precomputed with
# --reference-crops N (checked before a study starts).
_CROPS = {"trainable": "full", "reference_crops": {"whole": 0.4, "head": 0.2, "upper": 0.2, "clothing": 0.2}}


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("full", "minimal-invasive + progressive + focus-by-predicting", {}, {}),
        Variant("full-finetune", "all parameters trained", {"trainable": "full"}, {"trainable": "full"}),
        Variant("single-stage", "no progressive training (both tasks from the start)", None, {"single_stage": True}),
        Variant("no-mask", "no focus-by-predicting (no mask head)", {}, {"mask_head": False}),
        Variant("minimal-ffn", "minimal-invasive + the FFNs in stage 2 (diagnostic)", {}, {"trainable": "minimal+ffn"}),
        Variant(
            "rope-zero",
            "full fine-tune with OmniHuman-1's reference RoPE (time index 0)",
            _ROPE_ZERO,
            _ROPE_ZERO,
            versus="full-finetune",
        ),
        Variant(
            "crops",
            "full fine-tune with references cropped at random to head, upper body or clothing",
            _CROPS,
            _CROPS,
            versus="full-finetune",
        ),
    )
}


def variant_versus(names) -> dict[str, str]:
    """{variant: the variant it is paired with} for the variants of `names` whose `versus` is among them."""
    names = set(names)
    return {n: VARIANTS[n].versus for n in names if VARIANTS[n].versus in names and n != VARIANTS[n].versus}


PAPER_VARIANTS = ("full", "full-finetune", "single-stage", "no-mask")  # the paper's Table 3: a study's default


@dataclass(frozen=True)
class GuidanceCase:
    name: str
    preset: str
    params: dict
    versus: str | None  # the case it differs from by one choice (its paired differences are taken from it)


_PAPER_CFG = "stage-adaptive (switch 980)"
GUIDANCE_CASES: tuple[GuidanceCase, ...] = (
    GuidanceCase(_PAPER_CFG, "paper", {}, None),
    GuidanceCase("static", "static", {}, _PAPER_CFG),
    GuidanceCase("switch 900", "paper", {"switch": 900.0}, _PAPER_CFG),
    GuidanceCase("switch 950", "paper", {"switch": 950.0}, _PAPER_CFG),
    GuidanceCase("switch 995", "paper", {"switch": 995.0}, _PAPER_CFG),
    GuidanceCase("static, no text term", "static", {"scale_t": 1.0}, "static"),
    GuidanceCase("static, no image term", "static", {"scale_i": 1.0}, "static"),
    GuidanceCase("static, no audio term", "static", {"scale_a": 1.0}, "static"),
)

# Metrics of the tables and curves: (key in the held-out summary, label, higher is better).
METRICS = (
    ("text_mean", "text following", True),
    ("subject_acc", "subject acc.", True),
    ("subject_gain", "subject gain vs mismatched", True),
    ("sync_c", "Sync-C", True),
    ("sync_ratio", "Sync-C / shuffled", True),
    ("sync_d", "Sync-D", False),
    ("offset_within_1", "|offset|<=1", True),
    ("mask_iou", "face-mask IoU", True),
    ("copy_scene", "copy: reference's scene", False),
    ("placement_copy", "copy: face placement", False),
)
METRIC_LABEL = {k: label for k, label, _ in METRICS}

# HuMo paper (arXiv 2509.08519v1), Table 3 "Quantitative ablation study on MoCha", HuMo-17B; every column higher
# is better. The paper gives no numbers for its time-adaptive CFG (Fig. 4 is qualitative).
PAPER_TABLE3 = {
    "columns": ("AES", "TVA", "ID-Cur", "Sync-C"),
    "rows": {
        "full": ("Ours-17B", (0.589, 6.508, 0.747, 6.252)),
        "full-finetune": ("Full Finetune", (0.529, 6.157, 0.749, 6.250)),
        "single-stage": ("w/o Progressive Training", (0.541, 6.375, 0.724, 6.106)),
        "no-mask": ("w/o Focus-by-Predicting", (0.587, 6.507, 0.730, 5.946)),
    },
}


# Our metric for each of Table 3's columns (AES, the aesthetic score, has none: the proving ground reads what the
# frames show, not how pleasing they are).
PAPER_METRIC = {"TVA": "text_mean", "ID-Cur": "subject_gain", "Sync-C": "sync_c"}

# What `full` must reach at its last checkpoint for the training claims to be about something it learnt: lip sync
# clearly above the shuffled-audio baseline and an identity gain over a mismatched reference.
LEARNING_BARS = {"sync_ratio": 2.0, "subject_gain": 0.2}


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims as the sign of one paired difference of the study."""

    text: str
    row: str  # the paired-difference row that tests it, "<variant or case> - <what it ablates>"
    metric: str  # a METRICS key
    sign: int  # the sign the difference has if the paper is right


CLAIMS: tuple[Claim, ...] = (
    Claim("minimal-invasive training keeps text following better than full fine-tuning (TVA 6.51 vs 6.16)",
          "full-finetune - full", "text_mean", -1),
    Claim("progressive training helps identity (ID-Cur 0.747 vs 0.724)", "single-stage - full", "subject_gain", -1),
    Claim("progressive training helps lip sync (Sync-C 6.25 vs 6.11)", "single-stage - full", "sync_c", -1),
    Claim("progressive training helps text following (TVA 6.51 vs 6.38)", "single-stage - full", "text_mean", -1),
    Claim("focus-by-predicting helps lip sync (Sync-C 6.25 vs 5.95)", "no-mask - full", "sync_c", -1),
    Claim("focus-by-predicting helps identity (ID-Cur 0.747 vs 0.730)", "no-mask - full", "subject_gain", -1),
    Claim("stage-adaptive CFG follows the text better than static CFG (Fig. 4)",
          f"static - {_PAPER_CFG}", "text_mean", -1),
    Claim("stage-adaptive CFG syncs better than static CFG (Fig. 4)", f"static - {_PAPER_CFG}", "sync_c", -1),
    Claim("the text guidance term helps text following", "static, no text term - static", "text_mean", -1),
    Claim("the image guidance term helps identity", "static, no image term - static", "subject_gain", -1),
    Claim("the audio guidance term helps lip sync", "static, no audio term - static", "sync_c", -1),
    # InterActHuman's (not HuMo's): judged where a study trains the `crops` variant
    Claim("reference crops lower copy-paste of the reference's scene", "crops - full-finetune", "copy_scene", -1),
    Claim("reference crops lower copy-paste of the reference's face placement", "crops - full-finetune",
          "placement_copy", -1),
)  # fmt: skip


def quantum(metric: str, clips: int) -> float:
    """What one held-out clip can move `metric` by: text following reads 3 factors a clip, subject accuracy 6
    attributes, the offset share one clip; the Sync scores, IoU and ratios are continuous (0)."""
    per_clip = {"text_mean": 3, "subject_acc": 6, "subject_gain": 6, "offset_within_1": 1}
    return 1.0 / (per_clip[metric] * clips) if metric in per_clip else 0.0


def verdict(diffs: list[float], sign: int, step: float, need: int = 2) -> str:
    """The study's rule for a claim: "agrees" / "disagrees" when the paired differences (one per seed, at least
    `need`, and never fewer than two) share one sign, their mean is more than twice their standard deviation and
    more than `step` (one clip's worth), with the sign the claim expects / the other one; "cannot tell" otherwise."""
    m, sd, n = mean_spread(diffs)
    if m is None or n < max(2, need) or m == 0:
        return "cannot tell"
    same = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if not (same and abs(m) > 2 * sd and abs(m) > step):
        return "cannot tell"
    return "agrees" if (m > 0) == (sign > 0) else "disagrees"


def verdicts(claims, rows: dict[str, dict], versus: dict[str, str], clips: int, keys=None,
             seeds: int = 2) -> list[dict[str, Any]]:  # fmt: skip
    """Every claim of `claims` that the rows can test (rows, versus and keys as in `paired_differences`): its
    per-seed differences and `verdict`, with one clip's worth of `clips` held-out clips as the smallest finding.
    `seeds`: the differences a verdict needs (a study's seeds: with some still to train, it cannot tell yet; the
    rule is too lenient on fewer)."""
    diffs = paired_differences(rows, versus, keys)
    out = []
    for c in claims:
        values = diffs.get(c.row, {}).get(c.metric)
        if values:
            out.append({"claim": c.text, "row": c.row, "metric": c.metric, "differences": values,
                        "verdict": verdict(values, c.sign, quantum(c.metric, clips), seeds)})  # fmt: skip
    return out


def claim_verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim of `CLAIMS` the results can test: its per-seed differences and verdict."""
    rows = {**results.get("final", {}), **results.get("guidance", {})}
    versus = variant_versus(results.get("final", {}))
    versus.update({c.name: c.versus for c in GUIDANCE_CASES if c.versus and c.name in results.get("guidance", {})})
    claims = [_as_studied(c, results) for c in CLAIMS]
    found = verdicts(claims, rows, versus, results["config"]["eval_clips"], seeds=len(results["config"]["seeds"]))
    guided = results["config"].get("guidance_variant", "full")
    for v in found:
        model = guided if v["row"].split(" - ")[0] in results.get("guidance", {}) else "full"
        missed = _missed_bar(results["final"].get(model), v["metric"])
        if missed and v["verdict"] != "cannot tell":
            v["verdict"] = f"cannot tell (`{model}` {missed})"
    return found


# The claims of a metric read a model that has learnt what it measures: a sync claim on a model that does not sync
# (or an identity claim on one without identity) measures noise around a skill it lacks.
_BAR_OF_METRIC = {"sync_c": "sync_ratio", "subject_gain": "subject_gain"}


def _missed_bar(per_seed: dict | None, metric: str) -> str | None:
    """Which `LEARNING_BARS` entry the model behind a claim on `metric` misses on the mean over seeds (None: it
    passes, or the metric has no bar)."""
    key = _BAR_OF_METRIC.get(metric)
    if key is None or not per_seed:
        return None
    m, _, _ = mean_spread([s.get(key) for s in per_seed.values()])
    if m is None or m >= LEARNING_BARS[key]:
        return None
    return f"misses the bar: {METRIC_LABEL[key]} {m:.2f} < {LEARNING_BARS[key]:g}"


def _as_studied(claim: Claim, results: dict[str, Any]) -> Claim:
    """`claim`, its text saying what the study's `single-stage - full` difference tests where `full`'s stage 2 has
    no task ramp (the audio-visual share constant, as in study v4): the stage-1 run alone, not the paper's whole
    progressive schedule."""
    full = next((r["config"] for n, r in (results.get("runs") or {}).items() if n.startswith("full-seed")), None)
    if claim.row != "single-stage - full" or full is None:
        return claim
    if full.get("av_fraction_start") != full.get("av_fraction_end"):
        return claim
    share = full.get("av_fraction_end")
    return dataclasses.replace(claim, text=f"{claim.text}; here only its stage 1 (stage 2's audio-visual share is "
                                           f"{share:g} throughout)")  # fmt: skip


@dataclass
class StudyConfig:
    """A `humo ablate` study. `recipe`: the folder `scripts/train_toy_model.sh` wrote (cache/, s0/, model/, data/)."""

    recipe: str = "runs/toy-recipe"
    out: str = "runs/ablate"
    train_config: str = "configs/toy.json"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(PAPER_VARIANTS))
    s1_steps: int = 300
    s2_steps: int = 600
    curve_points: int = 3
    eval_clips: int = 12
    eval_steps: int = 20
    guidance: bool = True
    # The variant whose final model the guidance study samples: HuMo's `full`, or another where `full` does not
    # learn what a guidance term amplifies at the study's scale (docs/ablations.md, "Study v3": its audio).
    guidance_variant: str = "full"
    # Every scale of the guidance cases moved to 1 + guidance_strength * (scale - 1): 1 keeps the paper's scales;
    # a small model is over-guided at them (the toy's own CFG is 2, 1/6 of the paper's text term 7's distance
    # from 1, docs/training.md "Guidance for the toy model"), and then the study measures over-guidance.
    guidance_strength: float = 1.0
    train_overrides: dict = field(default_factory=dict)  # extra TrainConfig fields for every run (e.g. batch_size)
    stage1_overrides: dict = field(default_factory=dict)  # ... for the stage-1 runs only (e.g. their lr)
    stage2_overrides: dict = field(default_factory=dict)  # ... for the stage-2 runs only
    # `single-stage` trains s1_steps + s2_steps (True: the same number of steps after the backbone as the
    # progressive variants, so that it is not short of training) or s2_steps only (False: sessions 5-6's study).
    equal_steps: bool = True
    # Text-to-video steps continuing the recipe's stage 0 before any variant (trained once, shared by every variant
    # and seed; 0: the recipe's backbone as it is). HuMo's minimal-invasive training presumes a pretrained backbone
    # that follows the text; the recipe's 2000 steps follow the scene only (docs/ablations.md, "Study v2").
    backbone_steps: int = 0
    # A folder kept with the code (committed) where every finished run's record and scores are written, so that the
    # study resumes on another machine (`humo.evaluation.ledger`); None: the results live in `out` only.
    ledger: str | None = None
    # Worker processes running the seeds side by side, whole seeds each, the cores split between them. On 2 cores
    # two 1-thread workers are ~1.1-1.25x faster than the seeds in turn (docs/ablations.md, "How long it takes").
    jobs: int = 1

    def __post_init__(self) -> None:
        problems = field_type_problems(self)
        if problems:  # before the checks below, which compare numbers
            raise HumoError("ablate: " + "; ".join(problems))
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            problems.append(f"variants {unknown}: unknown (known: {', '.join(VARIANTS)})")
        # The default (`full`) studies guidance only where `full` is trained; another variant named must be.
        if self.guidance and self.guidance_variant != "full" and self.guidance_variant not in self.variants:
            problems.append(f"guidance_variant {self.guidance_variant!r}: not among the variants {self.variants}")
        if not self.guidance_strength > 0:
            problems.append(f"guidance_strength {self.guidance_strength}: must be > 0 (1: the paper's scales)")
        if not self.seeds:
            problems.append("seeds: need at least one")
        for name in ("s1_steps", "s2_steps", "curve_points", "eval_steps", "jobs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} {getattr(self, name)}: must be >= 1")
        if self.backbone_steps < 0:
            problems.append(f"backbone_steps {self.backbone_steps}: must be >= 0")
        if self.eval_clips < 2:
            problems.append(f"eval_clips {self.eval_clips}: need at least 2 (the baselines pair clips)")
        if self.curve_points > self.s2_steps:
            problems.append(f"curve_points {self.curve_points}: more than s2_steps {self.s2_steps}")
        if problems:
            raise HumoError("ablate: " + "; ".join(problems))

    @property
    def recipe_path(self) -> Path:
        return Path(self.recipe)

    @property
    def backbone_path(self) -> Path:
        """The stage-0 weights every variant starts from."""
        run = backbone_run(self)
        return Path(run["out"]) / "final" / "ema.safetensors" if run else recipe_backbone(self.recipe_path)

    def check_recipe(self) -> None:
        check_recipe(self.recipe_path, self.train_config)
        from humo.reference_crops import uses_crops

        cropped = [v for v in self.variants if any(uses_crops((o or {}).get("reference_crops")) for o in
                                                   (VARIANTS[v].stage1, VARIANTS[v].stage2))]  # fmt: skip
        if cropped:
            from humo.data.loader import LatentCache

            if not any(e.get("reference_crops") for e in LatentCache(self.recipe_path / "cache").samples):
                raise HumoError(
                    f"ablate: variant {cropped[0]} trains with reference crops, but the cache "
                    f"{self.recipe_path / 'cache'} has none: precompute it again with --reference-crops 2"
                )


def recipe_backbone(r: Path) -> Path:
    """The recipe's stage-0 (text-to-video) weights."""
    return r / "s0" / "final" / "ema.safetensors"


def recipe_encoders(r: Path) -> Path:
    """The recipe's toy model folder whose codec and frozen encoders score a study's DiTs: `encoders/` (written
    before stage 0, so a recipe run with UNTIL=stage0 serves), else the exported `model/` (older recipes)."""
    r = Path(r)
    return r / "encoders" if (r / "encoders" / "vae").is_dir() else r / "model"


def check_recipe(r: Path, train_config: str, who: str = "ablate") -> None:
    """A one-line HumoError unless the toy recipe `r` has what a study needs and `train_config` exists."""
    need = {
        "training cache": r / "cache" / "index.json",
        "stage-0 backbone": recipe_backbone(r),
        "toy encoders": recipe_encoders(r) / "vae",
        "held-out manifest": r / "data" / "heldout" / "manifest.jsonl",
    }
    if not Path(train_config).is_file():
        raise HumoError(f"{who}: --config {train_config}: no such file (run from the repository or pass it)")
    missing = [f"{what} ({p})" for what, p in need.items() if not p.exists()]
    if missing:
        raise HumoError(
            f"{who}: recipe {r} is incomplete: missing {', '.join(missing)}; run scripts/train_toy_model.sh"
        )


def field_type_problems(config) -> list[str]:
    """What is ill-typed in the dataclass instance `config` (a study read from JSON): each field checked against its
    annotation (int, float (an int will do), bool, str, dict, list[X], X | None) -> one problem per field."""
    hints = typing.get_type_hints(type(config))
    problems = []
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        if not _has_type(value, hint):
            name = hint.__name__ if isinstance(hint, type) else str(hint)
            problems.append(f"{f.name} {value!r}: expected {name}")
    return problems


def _has_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def number_list(kind: type) -> Callable[[str], list]:
    """An argparse type: comma-separated numbers of `kind` ("0,1,2" -> [0, 1, 2]); a malformed one is argparse's
    one-line usage error naming the flag."""

    def convert(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {what}") from None

    return convert


def name_list(text: str) -> list[str]:
    """An argparse type: comma-separated names ("full,no-mask" -> ["full", "no-mask"])."""
    return [x.strip() for x in text.split(",") if x.strip()]


def study_from_args(args: argparse.Namespace, config_cls: type, **fields: Any):
    """The `config_cls` study of a command line (`humo ablate`, `humo ratios`): the --study file's fields (if any),
    then every flag given (a flag is named as its field, `--config` as `train_config`; argparse converted the
    text), then `fields`, then the --set overrides added to the train_overrides."""
    from humo.training.config import apply_overrides

    data = read_study_file(args.study, config_cls) if args.study else {}
    for name in config_cls.__dataclass_fields__:
        dest = "config" if name == "train_config" else name
        if getattr(args, dest, None) is not None:
            data[name] = getattr(args, dest)
    data.update(fields)
    if args.overrides and isinstance(data.get("train_overrides", {}), dict):
        data["train_overrides"] = apply_overrides(data.get("train_overrides", {}), args.overrides)
    return config_cls(**data)


def add_study_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `humo ablate` and `humo ratios` share beyond their config fields: --report and --set."""
    from humo.commands import add_set_flag

    parser.add_argument(
        "--report",
        action="store_true",
        help="write the tables and curves of the runs finished so far (the ledger's and the run folder's) and "
        "train or score nothing: a study's progress, from a clone without the recipe or any weights",
    )
    add_set_flag(
        parser,
        "extra training-config field for every run (e.g. batch_size=4, model_overrides.in_dim=24); added to "
        "the preset's",
    )


def run_study_command(cfg, run: Callable[..., dict], report: bool, tables: str, curves: str) -> int:
    """`humo ablate` / `humo ratios`: `run` (the study's `run_study`) on `cfg`, or its report, then a line saying
    where the results are (`tables`, `curves`: file names in the study folder)."""
    results = run(cfg, report=report)
    out = Path(cfg.out)
    if report:
        print(f"{len(results['runs'])} of {results['planned_runs']} runs finished; tables in {out / tables}")
    else:
        print(f"study finished in {results['seconds']:.0f} s; tables in {out / tables}, curves in {out / curves}")
    return 0


def read_study_file(path: str | os.PathLike, config_cls: type) -> dict:
    """The fields of a JSON study preset (`humo ablate --study`, `humo ratios --study`) for `config_cls`, a
    dataclass; a missing or unreadable file or an unknown field is a one-line error naming it."""
    path = Path(path)
    data = read_json_file(path, "--study")
    known = set(config_cls.__dataclass_fields__)
    if not isinstance(data, dict):
        raise HumoError(f"--study {path}: expected a JSON object of study fields")
    unknown = sorted(set(data) - known)
    if unknown:
        raise HumoError(f"--study {path}: unknown fields {unknown} (known: {', '.join(sorted(known))})")
    return data


# ----------------------------------------------------------------------------------------------------------------
# Runs


def _stage1_key(v: Variant) -> str | None:
    """The stage-1 run a variant starts from: shared by the variants whose stage 1 differs only in the trainable set
    (named after it), the variant's own where it changes anything else."""
    if v.stage1 is None:
        return None
    if set(v.stage1) - {"trainable"}:
        return f"s1-{v.name}"
    return "s1-" + (v.stage1.get("trainable") or "minimal")


def backbone_run(cfg: StudyConfig) -> dict[str, Any] | None:
    """The run continuing the recipe's stage 0 for `cfg.backbone_steps` (None when 0): trained before every other run,
    with the recipe's stage-0 settings (the training config's learning rate and schedule, restarted)."""
    if cfg.backbone_steps == 0:
        return None
    return {"name": "backbone", "variant": None, "seed": 0, "out": Path(cfg.out) / "train" / "backbone", "offset": 0,
            "overrides": {"stage": 0, "steps": cfg.backbone_steps, "init": str(recipe_backbone(cfg.recipe_path)),
                          "checkpoint_every": max(1, cfg.backbone_steps // 4), "keep_checkpoints": 0}}  # fmt: skip


def plan(cfg: StudyConfig) -> list[dict[str, Any]]:
    """Every training run of the study, in order (stage-1 runs before the stage-2 runs that start from them).

    A run's "offset" is the number of steps trained after the backbone before it starts (its stage 1's), so that
    curves of every variant share one axis: steps after the stage-0 backbone.
    """
    runs, seen = [], set()
    root = Path(cfg.out) / "train"
    backbone = str(cfg.backbone_path)
    ckpt_every = max(1, cfg.s2_steps // cfg.curve_points)
    for seed in cfg.seeds:
        for name in cfg.variants:
            v = VARIANTS[name]
            init2, offset, steps2 = backbone, cfg.s1_steps, cfg.s2_steps
            key = _stage1_key(v)
            if key is None:
                offset = 0
                steps2 += cfg.s1_steps if cfg.equal_steps else 0
            else:
                s1_out = root / f"{key}-seed{seed}"
                if s1_out not in seen:
                    seen.add(s1_out)
                    runs.append(
                        {"name": f"{key}-seed{seed}", "variant": None, "seed": seed, "out": s1_out, "offset": 0,
                         "overrides": {**cfg.stage1_overrides, "stage": 1, "steps": cfg.s1_steps, "init": backbone,
                                       **v.stage1}}
                    )  # fmt: skip
                init2 = str(s1_out / "final" / "ema.safetensors")
            runs.append(
                {"name": f"{name}-seed{seed}", "variant": name, "seed": seed, "out": root / f"{name}-seed{seed}",
                 "offset": offset,
                 "overrides": {**cfg.stage2_overrides, "stage": 2, "steps": steps2, "init": init2,
                               "checkpoint_every": ckpt_every, "keep_checkpoints": 0, **v.stage2}}
            )  # fmt: skip
    return runs


def run_config(cfg, run: dict[str, Any], who: str = "ablate") -> dict[str, Any]:
    """The checked training config of a study's run, as plain data: `cfg.train_config`, then `cfg.train_overrides`,
    then the run's own overrides (`model_overrides` merged entry by entry, so that a run adding a pose guider keeps
    the recipe's latent width)."""
    from humo.training.config import TrainConfig, merge_config_dicts, read_config_file

    place = {
        "cache": str(cfg.recipe_path / "cache"),
        "out": str(run["out"]),
        "seed": int(run["seed"]),
        "progress": False,
        "tensorboard": False,
    }
    data = merge_config_dicts(read_config_file(cfg.train_config), cfg.train_overrides, place, run["overrides"])
    return json.loads(json.dumps(TrainConfig.from_dict(data, f"{who} run {run['name']}").to_dict()))


def check_stored_run(run: dict[str, Any], intended: dict[str, Any], who: str = "ablate") -> None:
    """A one-line HumoError when the run folder holds a run trained with another configuration than `intended`
    (`run_config`): its ``config.json`` (the trainer's) is compared field by field (`ledger.config_differences`).
    No folder or no config.json: nothing."""
    stored_path = Path(run["out"]) / "config.json"
    if not stored_path.is_file():
        return
    try:
        stored = json.loads(stored_path.read_text())
    except (OSError, ValueError) as e:
        raise HumoError(f"{who}: run {run['name']}: {stored_path} is unreadable ({e}); use a new --out") from None
    differ = config_differences(stored, intended)
    if differ:
        raise HumoError(
            f"{who}: run {run['name']} in {run['out']} was trained with another configuration: {'; '.join(differ)}; "
            "its results would mix into this study's tables: use a new --out (or remove that run)"
        )


def train_run(cfg, run: dict[str, Any], log: Callable[[str], None], who: str = "ablate") -> Path:
    """Train one run (skipped when its export exists; resumed when it has checkpoints) -> its export path.

    Its config: `run_config`. A run folder holding a run of another configuration (`check_stored_run`: from an
    earlier study in the same --out) is a one-line error, before it is skipped or resumed."""
    from humo.training.config import TrainConfig
    from humo.training.loop import train

    export = Path(run["out"]) / "final" / "ema.safetensors"
    intended = run_config(cfg, run, who)
    check_stored_run(run, intended, who)
    if export.is_file():
        return export
    t0 = time.perf_counter()
    log(f"{who}: training {run['name']} ({run['overrides'].get('steps')} steps)")
    train(TrainConfig.from_dict(intended, f"{who} run {run['name']}"))
    log(f"{who}: trained {run['name']} in {time.perf_counter() - t0:.0f} s")
    return export


def _load_export(path: str | os.PathLike):
    from humo.checkpoint import load_dit

    return load_dit(path)


def checkpoint_dit(folder: str | os.PathLike):
    """The float32 HumoDiT of a training checkpoint folder, with its EMA weights, for evaluation."""
    import torch

    from humo.checkpoint import load_dit

    return load_dit(folder, dtype=torch.float32).requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


class Evaluator:
    """Scores DiTs on a toy recipe's held-out clips with the recipe's VAE and toy encoders (loaded on first use).

    recipe: the folder `scripts/train_toy_model.sh` wrote; `clips` held-out clips, `steps` sampling steps each.
    """

    def __init__(self, recipe: str | os.PathLike, clips: int, steps: int = 20):
        self.recipe, self.clips, self.steps = Path(recipe), clips, steps
        self.manifest = self.recipe / "data" / "heldout" / "manifest.jsonl"
        self.pipe = None

    @staticmethod
    def settings(clips: int, steps: int) -> dict[str, int]:
        """What a summary records of how it was scored (the clips asked for: a manifest may hold fewer)."""
        return {"eval_clips": clips, "eval_steps": steps}

    @property
    def scoring(self) -> dict[str, int]:
        return self.settings(self.clips, self.steps)

    @staticmethod
    def sampling_seed(seed: int) -> int:
        """The first clip's sampling seed for the models of training seed `seed` (clip i samples with it + i): every
        model of one training seed sees the same noise, so differences stay paired, and the spread over training
        seeds includes the sampling noise (seed 0 samples as the studies always did)."""
        return 1000 * seed

    def __call__(self, dit, guidance: str | None = None, params: dict | None = None, seed: int = 0) -> dict[str, Any]:
        """The summary of `dit` on the held-out clips, sampled from `seed` (`sampling_seed`)."""
        from humo.evaluation.heldout import evaluate_model, quiet_pipeline

        if self.pipe is None:
            self.pipe = quiet_pipeline(recipe_encoders(self.recipe))
        self.pipe.dit = dit
        res = evaluate_model(
            "(in memory)",
            self.manifest,
            clips=self.clips,
            steps=self.steps,
            guidance=guidance,
            guidance_params=params,
            log=None,
            pipe=self.pipe,
            seed=seed,
        )
        return {**res["summary"], **self.scoring, "eval_seed": seed}


def case_params(case: GuidanceCase, strength: float) -> dict[str, float]:
    """The guidance parameters a case samples with: its preset's scales (the case's own where it sets them), each
    moved to 1 + strength * (scale - 1), so that a scale of 1 (a term switched off) stays 1."""
    from humo.guidance.presets import preset_parameters

    if strength == 1.0:
        return dict(case.params)
    defaults = {k: v for k, v in preset_parameters(case.preset).items() if "scale" in k and isinstance(v, float)}
    params = {**defaults, **case.params}
    return {k: 1.0 + strength * (v - 1.0) if k in defaults else v for k, v in params.items()}


def kept_checkpoints(run_out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint a training run kept, by step (a folder without its state file
    is one a kill interrupted while it was being replaced)."""
    from humo.training.state import CHECKPOINTS_DIR, PREFIX, STATE_FILE

    root = run_out / CHECKPOINTS_DIR
    found = []
    for p in root.glob(f"{PREFIX}*") if root.is_dir() else []:
        if p.is_dir() and p.name[len(PREFIX) :].isdigit() and (p / STATE_FILE).is_file():
            found.append((int(p.name[len(PREFIX) :]), p))
    return sorted(found)


def training_seconds(run_out: str | os.PathLike) -> float | None:
    """Seconds a training run took, from its log (None without one): each record's samples since the one before
    over its samples/s. A resumed run's log holds the records up to its checkpoint and those after it, so this is
    the time of the steps that count, across every session that trained them, without the work a kill lost."""
    from humo.training.loop import LOG_FILE

    path = Path(run_out) / LOG_FILE
    if not path.is_file():
        return None
    total, before = 0.0, 0
    for line in path.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        if rec.get("samples_per_s"):
            total += (rec["samples"] - before) / rec["samples_per_s"]
            before = rec["samples"]
    return total


def start_summary(backbone: dict[str, dict]) -> dict | None:
    """The score of the model every variant starts from, among a study's scored backbones (`run_study`'s
    "backbone": the longer study backbone where one was trained, else the recipe's stage 0)."""
    return backbone.get("study backbone", backbone.get("recipe stage 0"))


def study_ledger(cfg, who: str) -> Ledger:
    """A study's `Ledger`, holding its summaries to the study's scoring settings (`Evaluator.scoring`)."""
    return Ledger(cfg.ledger, cfg.out, who, scoring=Evaluator.settings(cfg.eval_clips, cfg.eval_steps))


def _ledger_records(cfg, runs: list[dict[str, Any]], who: str):
    """The study's ledger, each run's intended config (`run_config`) and the ledger's records of the runs."""
    ledger = study_ledger(cfg, who)
    intended = {run["name"]: run_config(cfg, run, who) for run in runs}
    return ledger, intended, {n: r for n, c in intended.items() if (r := ledger.record(n, c)) is not None}


def study_runs_to_train(cfg, runs: list[dict[str, Any]], needed=(), who: str = "ablate") -> set[str]:
    """The names of `runs` that `train_and_score` would train (`ledger.runs_to_train`)."""
    return runs_to_train(runs, set(_ledger_records(cfg, runs, who)[2]), needed)


def train_and_score(cfg, runs: list[dict[str, Any]], evaluate: Callable[..., dict], log: Callable[[str], None],
                    who: str = "ablate", needed=(),
                    report: bool = False) -> tuple[dict[str, dict[int, dict]], dict[str, dict]]:  # fmt: skip
    """Train a study's `runs` (in training order) and score every kept checkpoint of each run with a variant ->
    ({run name: {step: summary}}, {run name: its ledger record}).

    `cfg.ledger` (`humo.evaluation.ledger`): runs it records are read from it, not trained; a recorded run is
    trained again only when a run to train starts from it, or `needed` (export paths: other evaluations to do)
    names it, and its weights are not on disk. Every run trained and scored here is recorded. Without a ledger
    every run is trained (skipped when its export exists) and its records are kept in memory only.
    `report`: train, score and record nothing: the runs the ledger records or the run folder holds trained and
    scored (`_finished_on_disk`), the others left out.
    """
    ledger, intended, records = _ledger_records(cfg, runs, who)
    train = set() if report else runs_to_train(runs, set(records), needed)
    scores: dict[str, dict[int, dict]] = {}
    for run in runs:
        name = run["name"]
        if name in train:
            if name in records:
                log(f"{who}: {name} is in the ledger; training it again, as a later run starts from it")
            train_run(cfg, run, log, who)
        points = {}
        if name in records:
            for step in records[name]["eval_steps"]:
                points[step] = ledger.evaluation(f"{name}-step{step:06d}.json")
        elif not report or _finished_on_disk(run, ledger):
            at = Evaluator.sampling_seed(run.get("seed", 0))
            for step, folder in _scored_checkpoints(run):
                points[step] = ledger.evaluation(
                    f"{name}-step{step:06d}.json",
                    None if report else lambda folder=folder, at=at: evaluate(checkpoint_dit(folder), seed=at),
                )
            seconds = training_seconds(run["out"])
            records[name] = ledger.write_record(run, intended[name], points, seconds, write=not report)
        for step, summary in points.items():
            log(f"{who}: {name} step {step}: " + _brief(summary))
        scores[name] = points
    return scores, records


def _scored_checkpoints(run: dict[str, Any]) -> list[tuple[int, Path]]:
    """(step, folder) of each checkpoint of a run that a study scores: every kept one of a variant's run, none of
    the runs variants only start from (the backbone, stage 1)."""
    return kept_checkpoints(Path(run["out"])) if run["variant"] is not None else []


def _finished_on_disk(run: dict[str, Any], ledger: Ledger) -> bool:
    """Whether a run the ledger does not record is trained (its export written) and scored in the run folder."""
    return (Path(run["out"]) / "final" / "ema.safetensors").is_file() and all(
        ledger.has_evaluation(f"{run['name']}-step{step:06d}.json") for step, _ in _scored_checkpoints(run)
    )


def run_study(
    cfg: StudyConfig, log: Callable[[str], None] = print, worker: bool = False, report: bool = False
) -> dict[str, Any]:
    """Train, evaluate, tabulate and plot the whole study (resumable) -> the results dict.

    worker: a `run_workers` process: train and evaluate its seeds, but leave the study's own files
    (study.json, results.json, ablation.md, curves.png) to the parent, which writes them for all seeds.
    report: train and score nothing; tabulate and plot the runs and evaluations finished so far (the ledger's and
    the run folder's), which needs neither the recipe nor any weights.
    """
    if not report:
        cfg.check_recipe()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not worker and not report:
        with atomic_path(out / "study.json") as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    t_start = time.perf_counter()
    ledger = study_ledger(cfg, "ablate")
    longer_backbone = backbone_run(cfg)
    runs = ([longer_backbone] if longer_backbone else []) + plan(cfg)
    # What the variants start from, scored as they are (a "pretrained" backbone that follows the text?).
    starts = {"recipe stage 0": (recipe_backbone(cfg.recipe_path), "recipe-stage0.json")}
    if cfg.backbone_steps:
        starts["study backbone"] = (cfg.backbone_path, "backbone.json")
    # The guidance study samples the final model of `guidance_variant` for every seed.
    which = cfg.guidance_variant if cfg.guidance and cfg.guidance_variant in cfg.variants else None
    model = "" if which == "full" else f"{which}-"  # `full`'s files keep the names earlier studies cached them under
    strength = "" if cfg.guidance_strength == 1.0 else f"-strength{cfg.guidance_strength:g}"

    def guidance_file(case: GuidanceCase, seed: int) -> str:
        return f"guidance-{model}{_slug(case.name)}{strength}-seed{seed}.json"

    def export(seed: int) -> Path:
        return Path(cfg.out) / "train" / f"{which}-seed{seed}" / "final" / "ema.safetensors"

    needed = [str(w) for w, name in starts.values() if not ledger.has_evaluation(name)]
    if which:
        needed += [str(export(sd)) for sd in cfg.seeds if
                   not all(ledger.has_evaluation(guidance_file(c, sd)) for c in GUIDANCE_CASES)]  # fmt: skip
    if not report and longer_backbone and longer_backbone["name"] in study_runs_to_train(cfg, runs, needed):
        train_run(cfg, longer_backbone, log)  # shared by every seed: before the workers
    if cfg.jobs > 1 and len(cfg.seeds) > 1 and not report:
        run_workers(cfg, log)  # after them every run and evaluation below is cached: this pass only gathers
    evaluator = Evaluator(cfg.recipe_path, cfg.eval_clips, cfg.eval_steps)
    backbone = {}
    for label, (weights, name) in starts.items():
        if report and not ledger.has_evaluation(name):
            continue
        backbone[label] = ledger.evaluation(name, None if report else lambda w=weights: evaluator(_load_export(w)))
        log(f"ablate: {label}: " + _brief(backbone[label]))
    scores, records = train_and_score(cfg, runs, evaluator, log, "ablate", needed, report)
    curves: dict[str, dict[int, dict[int, dict]]] = {}
    for run in runs:
        for step, summary in scores[run["name"]].items():
            curves.setdefault(run["variant"], {}).setdefault(run["seed"], {})[run["offset"] + step] = summary
    guidance: dict[str, dict[int, dict]] = {}
    for seed in cfg.seeds if which else []:
        dit = None
        for case in GUIDANCE_CASES:
            if report and not ledger.has_evaluation(guidance_file(case, seed)):
                continue
            if dit is None and not ledger.has_evaluation(guidance_file(case, seed)):
                dit = _load_export(export(seed))
            params, at = case_params(case, cfg.guidance_strength), Evaluator.sampling_seed(seed)
            summary = ledger.evaluation(
                guidance_file(case, seed),
                None
                if report
                else lambda case=case, dit=dit, params=params, at=at: evaluator(dit, case.preset, params, seed=at),
            )
            guidance.setdefault(case.name, {})[seed] = summary
            log(f"ablate: guidance '{case.name}' seed {seed}: " + _brief(summary))
    trained = {name: rec["training_seconds"] for name, rec in records.items()}
    results = {
        "config": dataclasses.asdict(cfg),
        "curves": curves,
        "final": {v: {s: pts[max(pts)] for s, pts in seeds.items()} for v, seeds in curves.items()},
        "guidance": guidance,
        "backbone": backbone,
        "training_seconds": trained,
        "runs": records,
        "planned_runs": len(runs),
        "seconds": time.perf_counter() - t_start,  # this invocation's (a resumed study's last part)
    }
    if worker:
        return results
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text(format_tables(results))
    plot_curves(curves, out / "curves.png", start=start_summary(backbone))
    return results


def run_workers(cfg: StudyConfig, log: Callable[[str], None]) -> None:
    """Run the study's seeds in `cfg.jobs` worker processes (seeds dealt round-robin), the cores split evenly.

    Each worker is this module run on a copy of `cfg` with its seeds and `jobs=1`; its output goes to
    ``OUT/workers/seeds-....log``. Any worker failing is an error naming its log.
    """
    import subprocess
    import sys

    groups = [cfg.seeds[i :: cfg.jobs] for i in range(min(cfg.jobs, len(cfg.seeds)))]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = str(max(1, cores // len(groups)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    root = Path(cfg.out) / "workers"
    procs = []
    for seeds in groups:
        stem = root / ("seeds-" + "-".join(map(str, seeds)))
        with atomic_path(stem.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(cfg, seeds=seeds, jobs=1)), indent=1))
        log_path = stem.with_suffix(".log")
        log(f"ablate: seeds {seeds} in a worker on {threads} thread(s), log {log_path}")
        with open(log_path, "w") as fh:
            cmd = [sys.executable, "-m", "humo.evaluation.ablation", str(stem.with_suffix(".json"))]
            procs.append((seeds, log_path, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)))
    failed = []
    for seeds, log_path, proc in procs:
        if proc.wait() != 0:
            lines = log_path.read_text().strip().splitlines()
            failed.append(f"seeds {seeds} (exit {proc.returncode}, {log_path}: {lines[-1] if lines else 'no output'})")
    if failed:
        raise HumoError("ablate: worker failed: " + "; ".join(failed))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _brief(s: dict) -> str:
    def f(k):
        v = s.get(k)
        return "-" if v is None else f"{v:.2f}"

    return (
        f"text {f('text_mean')} subject {f('subject_acc')} (gain {f('subject_gain')}) sync_c {f('sync_c')} "
        f"(x{f('sync_ratio')}) iou {f('mask_iou')}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Tables and plots


def _cell(values) -> str:
    return _pm(*mean_spread(values))


def _pm(m: float | None, sd: float | None, n: int, sign: str = "") -> str:
    """A mean and its spread over n seeds as a table shows them: "m ± sd"; "m (1 seed)", which has no spread."""
    if m is None:
        return "-"
    return f"{m:{sign}.3f} " + ("(1 seed)" if n == 1 else f"± {sd:.3f}")


def paired_differences(rows: dict[str, dict], versus: dict[str, str], keys=None) -> dict[str, dict[str, list[float]]]:
    """Per-seed differences of rows from the rows they ablate: {row: {metric key: [row - its base, per seed]}}.

    rows: {row name: {seed: summary}}; versus: {row name: base row name} (rows not in it, or whose base is
    absent, are skipped); keys: the summary keys compared (default: those of `METRICS`). Seeds pair runs that
    share everything but the ablated choice (the stage-0 backbone, the data order, the held-out clips), so what
    the two share cancels out of the difference. Only seeds present in both rows count; a metric missing on
    either side (the no-mask IoU) is left out.
    """
    keys = tuple(k for k, _, _ in METRICS) if keys is None else keys
    out: dict[str, dict[str, list[float]]] = {}
    for name, per_seed in rows.items():
        base = versus.get(name)
        if base not in rows:
            continue
        ref = {str(k): v for k, v in rows[base].items()}
        diffs = {}
        for key in keys:
            pairs = [(s.get(key), ref[str(sd)].get(key)) for sd, s in per_seed.items() if str(sd) in ref]
            vals = [a - b for a, b in pairs if a is not None and b is not None]
            if vals:
                diffs[key] = vals
        out[f"{name} - {base}"] = diffs
    return out


def _metric_table(title: str, cells: dict[str, list[str]]) -> list[str]:
    """Markdown lines: a blank line, then a table with a column per `METRICS` entry; cells: {row name: its cells}
    (none: no lines)."""
    if not cells:
        return []
    lines = ["", f"| {title} | " + " | ".join(label for _, label, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    return lines + [f"| {name} | " + " | ".join(row) + " |" for name, row in cells.items()]


def _mean_table(title: str, rows: dict[str, dict]) -> list[str]:
    """rows: {row name: {seed: summary}} -> a table of mean ± std over the seeds."""
    return _metric_table(
        title,
        {
            name: [_cell([s.get(k) for s in per_seed.values()]) for k, _, _ in METRICS]
            for name, per_seed in rows.items()
        },
    )


def _difference_table(rows: dict[str, dict], versus: dict[str, str]) -> list[str]:
    """rows as in `_mean_table`; versus as in `paired_differences` -> a table of the differences' mean ± std."""
    cells = {}
    for name, d in paired_differences(rows, versus).items():
        stats = [mean_spread(d.get(key, [])) for key, _, _ in METRICS]
        cells[name] = [_pm(*s, sign="+") for s in stats]
    return _metric_table("difference, paired by seed", cells) if cells else []


def format_tables(results: dict[str, Any]) -> str:
    """Markdown: the variants table (final checkpoints, mean ± std over seeds) and each variant's paired
    differences from the variant it changes (`Variant.versus`); the guidance table and each case's paired
    differences from the case it ablates (`GuidanceCase.versus`)."""
    config = results["config"]
    lines = [
        *progress_lines(results),
        f"Mean ± standard deviation over seeds {config['seeds']}; {config['eval_clips']} held-out clips per "
        f"evaluation, {config['eval_steps']} sampling steps.",
        *_schedule_lines(config),
        *_training_time_lines(results.get("training_seconds") or {}),
        *_mean_table("variant", results["final"]),
        *_difference_table(results["final"], variant_versus(results["final"])),
        *_bar_lines(results),
    ]
    if results.get("backbone"):  # what every variant started from, scored as it was (one evaluation each)
        steps = results["config"].get("backbone_steps", 0)
        lines += _metric_table(
            "stage-0 backbone",
            {
                (f"{label} (+{steps} steps)" if label == "study backbone" else label): [
                    _cell([summary.get(k)]) for k, _, _ in METRICS
                ]
                for label, summary in results["backbone"].items()
            },
        )
    paper = PAPER_TABLE3
    lines += ["", "The paper's Table 3 (HuMo-17B on MoCha; every column higher is better):", "",
              "| variant | paper's row | " + " | ".join(paper["columns"]) + " |",
              "|---|---|" + "---|" * len(paper["columns"])]  # fmt: skip
    for name, (label, values) in paper["rows"].items():
        lines.append(f"| {name} | {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += _paper_beside_ours(results["final"])
    if results.get("guidance"):  # results of earlier studies have neither field below
        model, strength = config.get("guidance_variant", "full"), config.get("guidance_strength", 1.0)
        title = f"guidance ({model} model" + ("" if strength == 1.0 else f", strength {strength:g}") + ")"
        lines += _mean_table(title, results["guidance"])
        lines += _difference_table(results["guidance"], {c.name: c.versus for c in GUIDANCE_CASES if c.versus})
    lines += claims_table(claim_verdicts(results))
    lines += provenance_lines(results.get("runs") or {})
    return "\n".join(lines) + "\n"


def _schedule_lines(config: dict[str, Any]) -> list[str]:
    """What every variant was trained with, as the study's config says (earlier studies' results lack fields)."""
    if "s2_steps" not in config:
        return []
    single = config["s2_steps"] + (config["s1_steps"] if config.get("equal_steps", True) else 0)
    text = (f"Schedule: backbone +{config.get('backbone_steps', 0)} stage-0 steps (shared); stage 1 "
            f"{config['s1_steps']} steps, stage 2 {config['s2_steps']} steps (`single-stage`: {single} steps in one "
            f"run, with the stage-2 settings)")  # fmt: skip
    overrides = [f"{name} {json.dumps(config[key], sort_keys=True)}" for key, name in
                 (("train_overrides", "every run"), ("stage1_overrides", "stage 1"), ("stage2_overrides", "stage 2"))
                 if config.get(key)]  # fmt: skip
    return ["", text + ("; overrides: " + "; ".join(overrides) if overrides else "") + "."]


def _run_kind(name: str) -> str:
    return "backbone" if name == "backbone" else "stage 1" if name.startswith("s1-") else "stage 2"


def _training_time_lines(seconds: dict[str, float | None], kind: Callable[[str], str] = _run_kind) -> list[str]:
    """The study's training time from its runs' logs (`training_seconds`), summed by `kind` of run name."""
    known = {k: v for k, v in seconds.items() if v is not None}
    if not known:
        return []
    part: dict[str, float] = {}
    for name, sec in known.items():
        part[kind(name)] = part.get(kind(name), 0.0) + sec
    detail = ", ".join(f"{k} {v / 3600:.2f} h" for k, v in part.items())
    return ["", f"Training time on this machine, from the runs' logs: {sum(known.values()) / 3600:.2f} h ({detail}; "
                f"{len(known)} runs; evaluation not included)."]  # fmt: skip


def _bar_lines(results: dict[str, Any]) -> list[str]:
    """Whether `full` learnt what the training claims are about (`LEARNING_BARS`), and its subject gain over the
    backbone it started from (which may pass the absolute bar already)."""
    full = results["final"].get("full")
    if not full:
        return []
    cells, means = [], {}
    for key, bar in LEARNING_BARS.items():
        m, sd, n = mean_spread([s.get(key) for s in full.values()])
        if m is not None:
            means[key] = m
            cells.append(f"{METRIC_LABEL[key]} {_pm(m, sd, n)} ({'passes' if m >= bar else 'misses'} the bar {bar:g})")
    start = start_summary(results.get("backbone", {}))
    if start and start.get("subject_gain") is not None and "subject_gain" in means:
        cells.append(
            f"subject gain over the backbone it started from {means['subject_gain'] - start['subject_gain']:+.3f}"
        )
    return ["", "Did `full` learn what the claims are about? " + "; ".join(cells) + "."] if cells else []


def _paper_beside_ours(final: dict[str, dict]) -> list[str]:
    """Each of Table 3's variants minus its full model, the paper's difference beside ours (paired by seed) for the
    columns we have a metric for (`PAPER_METRIC`)."""
    diffs = paired_differences(final, {v: "full" for v in PAPER_TABLE3["rows"] if v != "full" and v in final})
    if not diffs:
        return []
    cols, (_, full_row) = PAPER_TABLE3["columns"], PAPER_TABLE3["rows"]["full"]
    head = " | ".join(f"paper {c} | ours: {METRIC_LABEL[PAPER_METRIC[c]]}" for c in cols if c in PAPER_METRIC)
    lines = ["", "Each variant minus the full model, the paper's difference beside ours (mean ± std of the "
                 "per-seed differences); AES has no counterpart here:", "",
             f"| difference | {head} |", "|---|" + "---|---|" * len(PAPER_METRIC)]  # fmt: skip
    for row, d in diffs.items():
        name = row.split(" - ")[0]
        cells = []
        for i, c in enumerate(cols):
            if c not in PAPER_METRIC:
                continue
            paper = PAPER_TABLE3["rows"][name][1][i] - full_row[i]
            cells += [f"{paper:+.3f}", _pm(*mean_spread(d.get(PAPER_METRIC[c], [])), sign="+")]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def claims_table(found: list[dict[str, Any]], metrics=METRICS) -> list[str]:
    """Markdown lines: a blank line and the table of `verdicts` (none when there are none); metrics: (key, label,
    higher is better) of the claims' metrics."""
    if not found:
        return []
    label = {k: lab for k, lab, _ in metrics}
    rule = "every seed's difference of one sign, the mean beyond twice the spread and one clip's worth"
    lines = [
        "",
        f"Claims, by the rule of `verdict` ({rule}):",
        "",
        "| claim | difference | metric | per seed | mean ± std | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in found:
        seeds = ", ".join(f"{d:+.3f}" for d in v["differences"])
        lines.append(f"| {v['claim']} | {v['row']} | {label[v['metric']]} | {seeds} | "
                     f"{_pm(*mean_spread(v['differences']), sign='+')} | **{v['verdict']}** |")  # fmt: skip
    return lines


def plot_curves(
    curves: dict[str, dict[int, dict[int, dict]]], path: str | os.PathLike, start: dict | None = None
) -> Path | None:
    """One panel per metric the curves have: the mean over seeds against the steps trained after the backbone
    (stage 1 + stage 2), with the seeds' range shaded; `start` (the backbone's summary), when given, is every
    variant's point at step 0."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humo.media.image import save_figure

    if start is not None:
        curves = {v: {sd: {0: start, **pts} for sd, pts in seeds.items()} for v, seeds in curves.items()}
    have = {k for seeds in curves.values() for pts in seeds.values() for s in pts.values() for k, v in s.items()
            if v is not None}  # fmt: skip
    keys = [m for m in METRICS if m[0] in have]
    if not keys:
        return None
    ncols = min(5, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    for ax, (key, label, higher) in zip(axes.flat, keys, strict=False):
        for variant, seeds in curves.items():
            steps = sorted({s for pts in seeds.values() for s in pts})
            rows = [[seeds[sd].get(st, {}).get(key) for sd in seeds] for st in steps]
            stats = [mean_spread(r) for r in rows]
            xs = [st for st, (m, _, _) in zip(steps, stats, strict=True) if m is not None]
            if not xs:
                continue
            mean = [m for m, _, _ in stats if m is not None]
            lo = [min(v for v in r if v is not None) for r, (m, _, _) in zip(rows, stats, strict=True) if m is not None]
            hi = [max(v for v in r if v is not None) for r, (m, _, _) in zip(rows, stats, strict=True) if m is not None]
            (line,) = ax.plot(xs, mean, marker="o", label=variant)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_title(label + ("" if higher else " (lower is better)"))
        ax.set_xlabel("steps after the stage-0 backbone")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    return save_figure(fig, path)


if __name__ == "__main__":  # a `run_workers` worker: python -m humo.evaluation.ablation STUDY.json
    import sys

    run_study(StudyConfig(**json.loads(Path(sys.argv[1]).read_text())), log=lambda m: print(m, flush=True), worker=True)

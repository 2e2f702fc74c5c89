"""The training configuration: one typed dataclass, read from a JSON/TOML file and overridden with ``key=value``.

>>> cfg = load_config("cfg.json", ["stage=2", "lr=1e-4", "model_overrides.num_layers=4"])

Every field has a default so a config file only names what differs. Values given with ``--set`` are parsed as
JSON when they parse (``2``, ``1e-4``, ``true``, ``null``, ``[0.9, 0.99]``) and taken as strings otherwise; a
dotted key (``model_overrides.dim=64``) sets one entry of a dict field. Unknown keys and ill-typed values are a
`HumoError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humo.constants import NULL_TEXTS
from humo.errors import HumoError

TRAINABLE = ("minimal", "minimal+ffn", "full")
TRAINABLE_ALIASES = {"all": "full"}  # "all" reads better for the stage-0 backbone pre-training
PRECISIONS = ("bf16", "fp32")
LR_SCHEDULES = ("constant", "cosine")
TIMESTEP_DISTRIBUTIONS = ("logitnormal", "uniform")
DISTRIBUTED = ("ddp", "fsdp")

# Fields a resumed run must share with the run that wrote the checkpoint (anything else, e.g. steps, log_every
# or num_workers, may change between the two).
STRUCTURAL_FIELDS = (
    "model",
    "model_overrides",
    "stage",
    "single_stage",
    "trainable",
    "lora_rank",
    "mask_head",
    "num_refs",
    "persons",
    "condition_ratios",
    "batch_size",
    "grad_accum",
    "seed",
)


@dataclass
class TrainConfig:
    """Everything a training run needs. See docs/training.md for the recipe and each field's role."""

    # -- data and output
    cache: str = ""  # folder written by `humo precompute`
    index: str = "index.json"  # index file inside the cache (one per manifest)
    split: str | None = "train"  # only samples of this split (None: all)
    out: str = "runs/humo"  # run folder: log.jsonl, config.json, checkpoints/, final/
    # -- model
    model: str = "toy"  # DiT preset (humo.configs.DIT_PRESETS)
    model_overrides: dict = field(default_factory=dict)  # DiTConfig fields overriding the preset
    init: str | None = None  # weights to start from (an export, a release checkpoint, or a checkpoint folder)
    # -- curriculum (humo.training.curriculum)
    stage: int = 1  # 0 backbone (text->video), 1 subject preservation, 2 + audio-visual sync
    single_stage: bool = False  # ablation: stage 2's two tasks at a fixed mix from the start (no ramp)
    trainable: str | None = None  # None: the stage's default; "minimal" | "minimal+ffn" | "full" (alias "all")
    lora_rank: int = 0  # > 0: LoRA on the self-attention q,k,v,o instead of training them fully
    lora_alpha: float | None = None  # LoRA scale numerator (None: = rank)
    lora_dropout: float = 0.0
    num_refs: int = 1  # reference latent frames appended after the video (zeros where a sample has fewer)
    av_fraction_start: float = 0.2  # stage 2: share of audio-visual samples at step 0 ...
    av_fraction_end: float = 0.5  # ... and after av_ramp_steps (single_stage: this share throughout)
    av_ramp_steps: int = 1000
    # -- objective (humo.training.objective)
    timestep_distribution: str = "logitnormal"
    timestep_loc: float = 0.0
    timestep_scale: float = 1.0
    timestep_shift: float = 1.0
    text_dropout: float = 0.1  # probability the prompt is replaced by the null text
    image_dropout: float = 0.1  # probability the references are replaced by the null image
    audio_dropout: float = 0.1  # probability the audio is replaced by all-zero windows
    # OmniHuman-1 states a strong condition's share as a ratio: the probability a sample that has a pose (and whose
    # task uses it) keeps it; the other samples see zero heatmaps (`objective.drop_probability`: 1 - ratio).
    pose_ratio: float = 0.5
    # OmniHuman-1's omni-condition training: {modality: ratio} for every registered modality (text, image, audio,
    # pose), each the share of the samples keeping the next weaker condition that also keep this one (text: of all
    # samples). The draw is nested (one uniform per sample), so a sample's conditions always obey the inference rule
    # (`conditioning.check_condition_order`); every sample trains with what it has (a sample without audio still
    # trains text and reference); the ratios replace the *_dropout fields, pose_ratio and stage 2's task mix. A ratio
    # of 0 leaves a condition out (the paper's first stages). Empty: HuMo's rule (`objective.keep_ratios`).
    condition_ratios: dict = field(default_factory=dict)
    # OmniHuman-1's long video: the share of micro-batches trained as a continuation (each clip's first 5 frames
    # as clean motion frames, its latent stream carried on after them, as `humo.pipeline` makes each segment after
    # the first); any cache of clips of 5 latent frames or more serves.
    continuation_share: float = 0.0
    # InterActHuman: train with each person's own audio injected where their ground-truth region is (a cache whose
    # clips have person masks: `humo precompute` of proving-ground or `person_audio` data), and the DiT's person mask
    # predictor (model_overrides.person_mask_blocks) on those regions with a focal loss of this weight (1:1 in the
    # paper). num_refs sets the most persons a sample may have.
    persons: bool = False
    person_mask_weight: float = 1.0
    # The focal loss per latent pixel weighted 1 + person_face_weight * (its face-mask fraction, every character's
    # face), renormalised per frame: a mouth hears the audio its mask gives it, and the faces are a few latent pixels
    # of a whole-person target (docs/ablations.md, "Why fixed strips beat the predicted masks"). 0 = the plain mean.
    person_face_weight: float = 0.0
    # InterActHuman's remedy for copy-paste: {whole, head, upper, clothing} -> the probability a reference is shown
    # so (the crops are cached by `humo precompute --reference-crops N`; `humo.reference_crops`). Empty: whole only.
    reference_crops: dict = field(default_factory=dict)
    null_text: str = "negative"  # what the dropped prompt becomes: the negative prompt (as at inference) or ""
    mask_head: bool = True  # focus-by-predicting; False builds the DiT with mask_head_blocks=0
    mask_loss_weight: float = 0.1
    # The flow loss per latent pixel is weighted 1 + face_loss_weight * (its face-mask fraction), renormalised to
    # the same mean: the mouth is a few latent pixels but carries the lip-sync task (talking-head trainers weight
    # the face or the lips likewise). 0 = the plain mean over the frame.
    face_loss_weight: float = 0.0
    # Likewise around chosen joints of the clip's pose (a DiT with a pose guider and a cache with poses): each latent
    # pixel weighted + pose_loss_weight * the joints' heatmap peak there (1 at the joint, falling with the guider's
    # sigma). The hands are small and fast and carry most of a driven pose's error; 0 = off.
    pose_loss_weight: float = 0.0
    pose_loss_joints: list = field(default_factory=lambda: ["left_wrist", "right_wrist"])
    zero_init_audio: bool = True  # audio branches that are untrained start with a zero output projection
    # -- optimisation
    steps: int = 1000
    batch_size: int = 1  # per process
    grad_accum: int = 1
    lr: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_betas: list = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm (0: off)
    ema_decay: float = 0.999
    precision: str = "bf16"  # bf16 autocast (fp32 master weights) or fp32
    gradient_checkpointing: bool = False
    seed: int = 0
    # -- data loading
    num_workers: int = 0
    # -- bookkeeping
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # most recent checkpoints kept (0: keep all)
    resume: str = "auto"  # "auto" (latest checkpoint in out/), "never", or a checkpoint folder
    tensorboard: bool = True
    progress: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)
    distributed: str = "ddp"  # data parallelism under torchrun: ddp | fsdp

    # ------------------------------------------------------------------------------------------------ checks
    def __post_init__(self) -> None:
        self.trainable = TRAINABLE_ALIASES.get(self.trainable, self.trainable)
        problems = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                problems.append(msg)

        need(self.stage in (0, 1, 2), f"stage {self.stage!r}: must be 0, 1 or 2")
        need(not self.single_stage or self.stage == 2, "single_stage: set stage=2 (it trains stage 2's task mix)")
        need(
            self.trainable is None or self.trainable in TRAINABLE,
            f"trainable {self.trainable!r}: use {'|'.join(TRAINABLE)}",
        )
        need(self.lora_rank >= 0, f"lora_rank {self.lora_rank}: must be >= 0")
        need(self.num_refs >= 0, f"num_refs {self.num_refs}: must be >= 0")
        need(self.person_mask_weight >= 0, f"person_mask_weight {self.person_mask_weight}: must be >= 0")
        need(self.person_face_weight >= 0, f"person_face_weight {self.person_face_weight}: must be >= 0")
        need(not (self.persons and self.continuation_share), "persons: not with continuation_share (one or the other)")
        for name in (
            "av_fraction_start", "av_fraction_end", "text_dropout", "image_dropout", "audio_dropout", "pose_ratio",
            "continuation_share",
        ):  # fmt: skip
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name} {v}: must be in [0, 1]")
        problems += condition_ratio_problems(self)
        from humo.reference_crops import crop_probability_problems

        problems += crop_probability_problems(self.reference_crops)
        need(0.0 <= self.lora_dropout < 1.0, f"lora_dropout {self.lora_dropout}: must be in [0, 1)")
        need(self.av_ramp_steps >= 0, f"av_ramp_steps {self.av_ramp_steps}: must be >= 0")
        need(
            self.timestep_distribution in TIMESTEP_DISTRIBUTIONS,
            f"timestep_distribution {self.timestep_distribution!r}: use {' | '.join(TIMESTEP_DISTRIBUTIONS)}",
        )
        need(self.timestep_scale > 0, f"timestep_scale {self.timestep_scale}: must be > 0")
        need(self.timestep_shift > 0, f"timestep_shift {self.timestep_shift}: must be > 0")
        need(self.null_text in NULL_TEXTS, f"null_text {self.null_text!r}: use negative | empty")
        need(self.mask_loss_weight >= 0, f"mask_loss_weight {self.mask_loss_weight}: must be >= 0")
        need(self.face_loss_weight >= 0, f"face_loss_weight {self.face_loss_weight}: must be >= 0")
        need(self.pose_loss_weight >= 0, f"pose_loss_weight {self.pose_loss_weight}: must be >= 0")
        from humo.pose import CANONICAL

        unknown = [j for j in self.pose_loss_joints if j not in CANONICAL]
        need(not unknown, f"pose_loss_joints {unknown}: unknown joint(s); use names of {', '.join(CANONICAL)}")
        for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every"):
            need(getattr(self, name) >= 1, f"{name} {getattr(self, name)}: must be >= 1")
        for name in ("warmup_steps", "num_workers", "keep_checkpoints"):
            need(getattr(self, name) >= 0, f"{name} {getattr(self, name)}: must be >= 0")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr {self.lr}: must be a positive number")
        need(self.lr_schedule in LR_SCHEDULES, f"lr_schedule {self.lr_schedule!r}: use constant | cosine")
        need(self.weight_decay >= 0, f"weight_decay {self.weight_decay}: must be >= 0")
        need(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"adam_betas {self.adam_betas}: need two numbers in [0, 1)",
        )
        need(self.grad_clip >= 0, f"grad_clip {self.grad_clip}: must be >= 0 (0 = off)")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay {self.ema_decay}: must be in [0, 1)")
        need(self.precision in PRECISIONS, f"precision {self.precision!r}: use bf16 | fp32")
        need(self.distributed in DISTRIBUTED, f"distributed {self.distributed!r}: use ddp | fsdp")
        need(bool(self.out), "out: must name the run folder")
        if problems:
            raise HumoError("train config: " + "; ".join(problems))

    # -------------------------------------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "train config") -> TrainConfig:
        return config_from_dict(cls, d, source)

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def condition_ratio_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with `cfg.condition_ratios` (nothing when empty): every registered modality named with a ratio
    in [0, 1], a stage that trains conditions (1 or 2), no audio in stage 1 (its DiT runs without the audio branch)
    and no single_stage (the ratios are the task mix)."""
    ratios = cfg.condition_ratios
    if not ratios:
        return []
    from humo.conditioning import STRENGTH

    problems = []
    if set(ratios) != set(STRENGTH):
        problems.append(f"condition_ratios {sorted(ratios)}: name each of {', '.join(STRENGTH)}")
    for m, r in ratios.items():
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            problems.append(f"condition_ratios.{m} {r!r}: must be a number in [0, 1]")
    if cfg.stage not in (1, 2):
        problems.append(f"condition_ratios: stage {cfg.stage} trains no conditions (use stage 1 or 2)")
    if cfg.stage == 1 and ratios.get("audio"):
        problems.append("condition_ratios.audio: must be 0 in stage 1 (its DiT runs without the audio branch)")
    if cfg.single_stage:
        problems.append("condition_ratios: not with single_stage (the ratios set the task mix)")
    return problems


def config_from_dict(cls, d: dict[str, Any], source: str):
    """An instance of the config dataclass `cls` from plain data: unknown fields and ill-typed values are a
    `HumoError` naming the field (`source` says where the data came from)."""
    if not isinstance(d, dict):
        raise HumoError(f"{source}: expected a mapping of field names to values")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise HumoError(f"{source}: unknown field(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{source}: field {k}") for k, v in d.items()})


def _coerce(value: Any, hint: Any, what: str) -> Any:
    """Check `value` against a field's type hint (int, float, bool, str, dict, list, X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise HumoError(f"{what}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise HumoError(f"{what}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise HumoError(f"{what}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise HumoError(f"{what}: expected a string, got {value!r}")
    if hint is dict:
        if isinstance(value, dict):
            return dict(value)
        raise HumoError(f"{what}: expected a mapping, got {value!r}")
    if hint is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise HumoError(f"{what}: expected a list, got {value!r}")
    return value


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A config file as a dict: ``.json`` or ``.toml``."""
    p = Path(path)
    if not p.is_file():
        raise HumoError(f"train config {p}: file not found")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise HumoError(f"train config {p}: not valid TOML ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise HumoError(f"train config {p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise HumoError(f"train config {p}: the top level must be an object")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``"lr=1e-4"`` -> ``("lr", 0.0001)``; the value is JSON when it parses, else the raw string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise HumoError(f"--set {item!r}: expected KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys reach into dict fields) to a config dict (a new dict)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        if rest:
            if head not in _DICT_FIELDS:
                raise HumoError(f"--set {key}: only dict fields ({', '.join(sorted(_DICT_FIELDS))}) take dotted keys")
            target = data.setdefault(head, {})
            if not isinstance(target, dict):
                raise HumoError(f"--set {key}: {head} is not a mapping")
            target[rest] = value
        else:
            data[key] = value
    return data


_DICT_FIELDS = {f.name for f in dataclasses.fields(TrainConfig) if f.type in ("dict", dict)}


def merge_config_dicts(*layers: dict[str, Any]) -> dict[str, Any]:
    """Config dicts layered left to right: later fields win, and dict fields (``model_overrides``) are merged
    entry by entry, so a layer that sets one model field keeps the others'."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            # probability tables are replaced whole: an entry-wise merge would break their sum
            whole = k in ("condition_ratios", "reference_crops")
            if k in _DICT_FIELDS and not whole and isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = {**out[k], **v}
            else:
                out[k] = v
    return out


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None, layers: list[dict] | None = None
) -> TrainConfig:
    """Defaults <- the file at `path` (if any) <- `layers` (e.g. a preset stage, `merge_config_dicts`) <- the
    ``KEY=VALUE`` overrides -> a checked TrainConfig."""
    data = read_config_file(path) if path is not None else {}
    data = merge_config_dicts(data, *(layers or []))
    data = apply_overrides(data, list(overrides or []))
    return TrainConfig.from_dict(data, f"train config {path}" if path is not None else "train config")

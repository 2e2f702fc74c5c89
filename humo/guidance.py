"""Multimodal, stage-adaptive classifier-free guidance over nested conditions.

A **condition** says which inputs one DiT pass sees: a subset of {text, image, audio}. An input left out is
replaced by its null: the null image is the zero reference (17B: the zero-video latent in ``y``; 1.7B: zero
reference latents), the null audio is all-zero Whisper features (before ``audio_proj``), and the null text is
the *negative prompt* embedding -- in both release scripts every pass without the prompt encodes
``n_prompt`` (Wan's default negative prompt unless the user gives one); there is no separate empty-text pass.
``Condition.null_text = "empty"`` selects the empty-string embedding instead (the paper's null token read
literally); ``"negative"`` is the default everywhere.

A guided prediction is a **chain** of strictly nested conditions c_0 < c_1 < ... < c_n with scales s_1..s_n::

    pred = p(c_0) + sum_k s_k * (p(c_k) - p(c_{k-1}))

evaluated as ``s_n*(p_n - p_{n-1}) + ... + s_1*(p_1 - p_0) + p_0`` (the release's order of operations). It covers:

    formula                 chain                  scales
    Wan CFG                 null, t                sT
    17B text+audio          null, t, ta            sT, sA
    17B t+i+a, t > 980      i, ti, tia             sT, sA
    17B t+i+a, t <= 980     null, ti, tia          sT - 2, sA
    1.7B t+i+a              null, t, ta, tia       sT, sA, sI
    paper eq. 4             null, t, ti, tia       lambda_txt, lambda_img, lambda_a

A **phase** applies one chain to timesteps ``t_min < t <= t_max`` (timesteps in [0, 1000]; the phase whose
``t_min`` is 0 also takes t = 0). A **schedule** is phases that tile [0, 1000] with no gap or overlap. The 17B
switch is the release's ``if t > step_change``: phase (980, 1000] gets the image-kept formula, [0, 980] the other;
with 50 steps at shift 5 that is the first 5 steps (t = 999, 995, 991, 987, 982).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from humo.conditioning import MODALITIES as _REGISTRY
from humo.conditioning import modality_names
from humo.constants import NULL_TEXTS
from humo.errors import HumoError, require_file

# The registered modalities (humo.conditioning): names in canonical order, and their letters in short names.
MODALITIES = modality_names()
T_MAX = 1000.0

_LETTER = {name: m.letter for name, m in _REGISTRY.items()}
_FROM_LETTER = {v: k for k, v in _LETTER.items()}

__all__ = [
    "MODALITIES",
    "NULL_TEXTS",
    "Condition",
    "GuidancePhase",
    "GuidanceSchedule",
    "ModelFn",
    "combine",
    "guided_prediction",
    "count_passes",
    "PRESETS",
    "preset_names",
    "schedule_from_spec",
    "schedule_from_dict",
    "load_schedule",
    "release_17b",
    "release_1_7b",
    "paper",
    "static",
    "annealed",
    "cfg",
    "none",
]


# ---------------------------------------------------------------------------------------------------------------
# Conditions


@dataclass(frozen=True)
class Condition:
    """Which inputs one forward pass sees.

    Attributes:
        modalities: a subset of {"text", "image", "audio"}; the others get their null input.
        null_text: what the text slot holds when "text" is absent: "negative" (the negative prompt, as the release
            does) or "empty" (the empty-string embedding). Normalised to "negative" when text is present, where
            it means nothing, so that equal passes compare (and hash) equal.
    """

    modalities: frozenset[str]
    null_text: str = "negative"

    def __post_init__(self) -> None:
        mods = frozenset(self.modalities)
        unknown = sorted(mods - set(MODALITIES))
        if unknown:
            raise HumoError(f"guidance condition: unknown modality {unknown[0]!r}; use {', '.join(MODALITIES)}")
        if self.null_text not in NULL_TEXTS:
            raise HumoError(f"guidance condition: null_text {self.null_text!r}; use one of {', '.join(NULL_TEXTS)}")
        object.__setattr__(self, "modalities", mods)
        if "text" in mods:
            object.__setattr__(self, "null_text", "negative")

    @classmethod
    def of(cls, *modalities: str, null_text: str = "negative") -> Condition:
        """``Condition.of("text", "audio")``."""
        return cls(frozenset(modalities), null_text)

    @classmethod
    def parse(cls, spec: str | Sequence[str], null_text: str = "negative") -> Condition:
        """From a short name (``"tia"``, ``"ti"``, ``"t"``, ``"null"``) or a list of modality names."""
        if isinstance(spec, Condition):
            return spec
        if isinstance(spec, str):
            s = spec.strip().lower()
            if s in ("null", "none", "neg", ""):
                return cls(frozenset(), null_text)
            if s in MODALITIES:
                return cls(frozenset([s]), null_text)
            if all(ch in _FROM_LETTER for ch in s) and len(set(s)) == len(s):
                return cls(frozenset(_FROM_LETTER[ch] for ch in s), null_text)
            raise HumoError(f"guidance condition {spec!r}: not a condition; write e.g. 'tia', 'ti', 't' or 'null'")
        if isinstance(spec, (list, tuple, set, frozenset)):
            names = [str(m).strip().lower() for m in spec]
            if len(set(names)) != len(names):
                raise HumoError(f"guidance condition {list(spec)!r}: a modality is repeated")
            return cls(frozenset(names), null_text)
        raise HumoError(f"guidance condition {spec!r}: expected a list of modality names or a name like 'tia'")

    def has(self, modality: str) -> bool:
        return modality in self.modalities

    @property
    def text_source(self) -> str:
        """What the text slot holds: "prompt", "negative" or "empty"."""
        return "prompt" if "text" in self.modalities else self.null_text

    @property
    def name(self) -> str:
        """Short name: "tia", "ti", "ta", "t", "i", "null" (suffix "~empty" when the null text is empty)."""
        base = "".join(_LETTER[m] for m in MODALITIES if m in self.modalities) or "null"
        return base if self.text_source != "empty" else f"{base}~empty"

    def to_list(self) -> list[str]:
        """Modality names in canonical order (text, image, audio)."""
        return [m for m in MODALITIES if m in self.modalities]

    def __repr__(self) -> str:
        return f"Condition({self.name})"


# ---------------------------------------------------------------------------------------------------------------
# Phases and schedules


def _check_scales(values: Iterable[Any], what: str) -> tuple[float, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise HumoError(f"{what}: scale {v!r} is not a number")
        v = float(v)
        if not math.isfinite(v):
            raise HumoError(f"{what}: scale {v!r} is not finite")
        if v < 0:
            raise HumoError(f"{what}: scale {v:g} is negative")
        out.append(v)
    return tuple(out)


def _fmt_range(t_min: float, t_max: float) -> str:
    return f"({t_min:g}, {t_max:g}]"


@dataclass(frozen=True)
class GuidancePhase:
    """One guidance formula, applied to timesteps ``t_min < t <= t_max`` (t in [0, 1000]).

    Attributes:
        t_min, t_max: the timestep interval (the schedule's lowest phase, with t_min = 0, also takes t = 0).
        chain: strictly nested conditions c_0 < c_1 < ... < c_n.
        scales: s_1..s_n (one per link, >= 0); at t_max when ``end_scales`` is given.
        end_scales: optional scales at t_min; the scale is then linear in t between the two (CFG annealing).
    """

    t_min: float
    t_max: float
    chain: tuple[Condition, ...]
    scales: tuple[float, ...]
    end_scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise HumoError(f"guidance phase: {name} {v!r} is not a finite number")
        t_min, t_max = float(self.t_min), float(self.t_max)
        where = f"guidance phase {_fmt_range(t_min, t_max)}"
        if not (0.0 <= t_min < t_max <= T_MAX):
            raise HumoError(f"{where}: needs 0 <= t_min < t_max <= {T_MAX:g}")
        chain = tuple(Condition.parse(c) if not isinstance(c, Condition) else c for c in self.chain)
        if not chain:
            raise HumoError(f"{where}: the chain is empty")
        for prev, cur in zip(chain, chain[1:]):
            if not prev.modalities < cur.modalities:
                raise HumoError(f"{where}: chain not nested ({prev.name} is not a strict subset of {cur.name})")
        null_texts = {c.null_text for c in chain if "text" not in c.modalities}
        if len(null_texts) > 1:
            raise HumoError(f"{where}: the chain mixes negative-prompt and empty null texts")
        scales = _check_scales(self.scales, where)
        if len(scales) != len(chain) - 1:
            raise HumoError(f"{where}: {len(chain)} conditions need {len(chain) - 1} scales, got {len(scales)}")
        end = None
        if self.end_scales is not None:
            end = _check_scales(self.end_scales, where)
            if len(end) != len(scales):
                raise HumoError(f"{where}: end_scales has {len(end)} values, scales has {len(scales)}")
        object.__setattr__(self, "t_min", t_min)
        object.__setattr__(self, "t_max", t_max)
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "end_scales", end)

    def contains(self, t: float) -> bool:
        """``t_min < t <= t_max`` (the t = 0 rule is the schedule's)."""
        return self.t_min < t <= self.t_max

    def scales_at(self, t: float | None = None) -> tuple[float, ...]:
        """The scales at timestep t: ``scales``, or the linear blend to ``end_scales`` (then t is required)."""
        if self.end_scales is None:
            return self.scales
        if t is None:
            raise ValueError("this guidance phase anneals its scales: pass the timestep")
        w = (min(max(float(t), self.t_min), self.t_max) - self.t_min) / (self.t_max - self.t_min)
        return tuple(e + (s - e) * w for s, e in zip(self.scales, self.end_scales))

    def conditions_needed(self) -> tuple[Condition, ...]:
        """The distinct conditions this phase evaluates, in chain order (one DiT pass each)."""
        return tuple(dict.fromkeys(self.chain))

    @property
    def null_text(self) -> str:
        return next((c.null_text for c in self.chain if "text" not in c.modalities), "negative")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "t_min": self.t_min,
            "t_max": self.t_max,
            "chain": [c.to_list() for c in self.chain],
            "scales": list(self.scales),
        }
        if self.end_scales is not None:
            d["end_scales"] = list(self.end_scales)
        if self.null_text != "negative":
            d["null_text"] = self.null_text
        return d

    def formula(self) -> str:
        """Human-readable, e.g. ``null + 3*(ti - null) + 5.5*(tia - ti)`` (``5..1`` for an annealed scale)."""
        if self.end_scales is None:
            scales = [f"{s:g}" for s in self.scales]
        else:
            scales = [f"{s:g}..{e:g}" for s, e in zip(self.scales, self.end_scales)]
        terms = [self.chain[0].name]
        terms += [f"{s}*({cur.name} - {prev.name})" for s, prev, cur in zip(scales, self.chain, self.chain[1:])]
        return " + ".join(terms)


@dataclass(frozen=True)
class GuidanceSchedule:
    """Phases tiling [0, 1000]; stored sorted from the highest timesteps (sampling order) down."""

    phases: tuple[GuidancePhase, ...]
    name: str = "custom"
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        if not phases:
            raise HumoError(f"guidance schedule {self.name}: no phases")
        for p in phases:
            if not isinstance(p, GuidancePhase):
                raise HumoError(f"guidance schedule {self.name}: {p!r} is not a GuidancePhase")
        phases = tuple(sorted(phases, key=lambda p: -p.t_max))
        if phases[0].t_max != T_MAX:
            raise HumoError(f"guidance schedule {self.name}: timesteps ({phases[0].t_max:g}, {T_MAX:g}] not covered")
        for hi, lo in zip(phases, phases[1:]):
            if lo.t_max < hi.t_min:
                raise HumoError(
                    f"guidance schedule {self.name}: gap, timesteps {_fmt_range(lo.t_max, hi.t_min)} not covered"
                )
            if lo.t_max > hi.t_min:
                raise HumoError(
                    f"guidance schedule {self.name}: phases {_fmt_range(lo.t_min, lo.t_max)} and "
                    f"{_fmt_range(hi.t_min, hi.t_max)} overlap"
                )
        if phases[-1].t_min != 0.0:
            raise HumoError(f"guidance schedule {self.name}: gap, timesteps [0, {phases[-1].t_min:g}] not covered")
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "params", dict(self.params))

    def phase_at(self, t: float | Tensor) -> GuidancePhase:
        """The phase for timestep t (a number or a tensor whose values are all equal)."""
        t = _scalar_t(t)
        if not (0.0 <= t <= T_MAX):
            raise HumoError(f"timestep {t:g}: outside [0, {T_MAX:g}]")
        for p in self.phases:
            if p.contains(t):
                return p
        return self.phases[-1]  # t == 0, the lowest phase's closed end

    def conditions_needed(self, t: float | Tensor | None = None) -> tuple[Condition, ...]:
        """Distinct conditions of the phase at t, or of all phases (first-use order) when t is None."""
        if t is not None:
            return self.phase_at(t).conditions_needed()
        return tuple(dict.fromkeys(c for p in self.phases for c in p.chain))

    def modalities_used(self) -> frozenset[str]:
        return frozenset(m for c in self.conditions_needed() for m in c.modalities)

    def check_inputs(self, inputs_present: Iterable[str]) -> None:
        """HumoError if a condition needs an input the user did not give (e.g. an image-guidance config, no image)."""
        present = _inputs(inputs_present)
        missing = [m for m in MODALITIES if m in self.modalities_used() and m not in present]
        if missing:
            raise HumoError(
                f"guidance {self.name}: its conditions use {missing[0]} but no {missing[0]} input was given"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``schedule_from_dict(s.to_dict())`` gives back an equal schedule."""
        d: dict[str, Any] = {"name": self.name, "phases": [p.to_dict() for p in self.phases]}
        if self.params:
            d["params"] = dict(self.params)
        return d

    def describe(self) -> str:
        parts = []
        for p in self.phases:
            where = _fmt_range(p.t_min, p.t_max) if p.t_min > 0 else f"[0, {p.t_max:g}]"
            parts.append(f"t in {where}: {p.formula()}")
        return "; ".join(parts)


def _scalar_t(t: float | Tensor) -> float:
    if isinstance(t, Tensor):
        flat = t.detach().reshape(-1)
        if flat.numel() == 0:
            raise ValueError("empty timestep tensor")
        if flat.numel() > 1 and not bool((flat == flat[0]).all()):
            raise ValueError("guided sampling needs one timestep for the whole batch")
        return float(flat[0])
    return float(t)


def _inputs(inputs_present: Iterable[str]) -> frozenset[str]:
    if isinstance(inputs_present, str):
        inputs_present = Condition.parse(inputs_present).modalities
    present = frozenset(str(m).lower() for m in inputs_present)
    unknown = sorted(present - set(MODALITIES))
    if unknown:
        raise HumoError(f"inputs {unknown[0]!r}: unknown modality; use {', '.join(MODALITIES)}")
    return present


# ---------------------------------------------------------------------------------------------------------------
# Combination and evaluation

ModelFn = Callable[[Tensor, Tensor, list[Condition]], "Tensor | tuple[Tensor, Tensor | None]"]
"""``model_fn(x_batch, t_batch, conditions) -> velocity`` or ``(velocity, aux)``: ``x_batch`` [k*B, ...] is x
repeated k = len(conditions) times, condition-major (rows j*B .. (j+1)*B - 1 see ``conditions[j]``); ``t_batch``
[k*B]; the velocity has ``x_batch``'s leading dimension, and so does ``aux`` (e.g. the mask head's logits) when
given."""


def combine(preds: Mapping[Condition, Tensor], phase: GuidancePhase, t: float | Tensor | None = None) -> Tensor:
    """The phase's formula on per-condition predictions (each [B, ...], same shape).

    ``t`` is needed only when the phase anneals its scales. Computed in at least float32.
    """
    missing = [c.name for c in phase.chain if c not in preds]
    if missing:
        raise KeyError(f"no prediction for condition(s) {', '.join(missing)}")
    scales = phase.scales_at(None if t is None else _scalar_t(t))
    p = [preds[c] for c in phase.chain]
    dtype = torch.promote_types(p[0].dtype, torch.float32)
    p = [x.to(dtype) for x in p]
    if not scales:
        return p[0].clone()
    # Highest link first, then down to p_0: the release's order of additions, so results match it bit for bit.
    n = len(scales)
    acc = scales[n - 1] * (p[n] - p[n - 1])
    for k in range(n - 1, 0, -1):
        acc = acc + scales[k - 1] * (p[k] - p[k - 1])
    return acc + p[0]


def guided_prediction(
    model_fn: ModelFn,
    x: Tensor,
    t: float | Tensor,
    schedule: GuidanceSchedule,
    *,
    max_batch: int | None = None,
    sequential: bool = False,
    return_aux: bool = False,
) -> Tensor | tuple[Tensor, dict[Condition, Tensor]]:
    """The guided velocity at timestep t (with ``return_aux``, also ``{condition: aux [B, ...]}`` of the passes
    whose ``model_fn`` returned an aux output).

    Looks up the phase for t, runs each distinct condition once and combines. By default all conditions go in ONE
    ``model_fn`` call, stacked along the batch; ``max_batch`` caps the rows per call (whole conditions per call, so
    it must be >= B); ``sequential=True`` makes one call per condition, as the release does.

    Args:
        model_fn: see ``ModelFn``.
        x: latents [B, ...].
        t: the timestep (a number, or a tensor of equal values).
        schedule: the guidance schedule.
    Returns: the guided prediction [B, ...] (at least float32).
    """
    t_val = _scalar_t(t)
    phase = schedule.phase_at(t_val)
    conds = list(phase.conditions_needed())
    b = x.shape[0]
    if sequential:
        per_call = 1
    elif max_batch is None:
        per_call = len(conds)
    else:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < b:
            raise HumoError(f"max batch {max_batch!r}: must be an integer >= the batch size {b}")
        per_call = max(1, max_batch // b)
    if isinstance(t, Tensor) and t.numel() == b:
        t_vec = t.reshape(b).to(x.device)
    else:
        t_vec = torch.full((b,), t_val, device=x.device, dtype=torch.float32)
    preds: dict[Condition, Tensor] = {}
    auxes: dict[Condition, Tensor] = {}
    for start in range(0, len(conds), per_call):
        chunk = conds[start : start + per_call]
        k = len(chunk)
        xb = x if k == 1 else x.repeat(k, *([1] * (x.ndim - 1)))
        tb = t_vec if k == 1 else t_vec.repeat(k)
        out = model_fn(xb, tb, chunk)
        out, aux = out if isinstance(out, tuple) else (out, None)
        if out.shape[0] != k * b:
            raise ValueError(f"model_fn returned {out.shape[0]} rows for {k} condition(s) x batch {b}")
        for j, c in enumerate(chunk):
            preds[c] = out[j * b : (j + 1) * b]
            if aux is not None:
                auxes[c] = aux[j * b : (j + 1) * b]
    pred = combine(preds, phase, t_val)
    return (pred, auxes) if return_aux else pred


def count_passes(schedule: GuidanceSchedule, timesteps: Iterable[float | Tensor]) -> int:
    """Forward passes (per sample) a sampling run needs: the number of conditions at each timestep, summed."""
    return sum(len(schedule.conditions_needed(t)) for t in timesteps)


# ---------------------------------------------------------------------------------------------------------------
# Presets: functions of (inputs_present, **params) -> GuidanceSchedule


def _one_phase(chain: Sequence[Condition], scales: Sequence[float], end_scales: Sequence[float] | None = None):
    return GuidancePhase(0.0, T_MAX, tuple(chain), tuple(scales), None if end_scales is None else tuple(end_scales))


def _require_text(name: str, present: frozenset[str]) -> None:
    if "text" not in present:
        raise HumoError(f"guidance preset {name}: needs the text input (the prompt; it may be empty)")


def _eq4_chain(present: frozenset[str], null_text: str, scale_by_modality: Mapping[str, float]):
    """Paper eq. 4 order: null -> +text -> +image -> +audio, skipping inputs that are absent."""
    chain = [Condition(frozenset(), null_text)]
    scales = []
    for m in MODALITIES:
        if m in present:
            chain.append(Condition(chain[-1].modalities | {m}, null_text))
            scales.append(scale_by_modality[m])
    return chain, scales


def release_17b(
    inputs_present: Iterable[str],
    *,
    scale_t: float = 5.0,
    scale_a: float = 5.5,
    step_change: float = 980.0,
    late_text_drop: float = 2.0,
    null_text: str = "negative",
) -> GuidanceSchedule:
    """HuMo-17B as released (``generate.py``: ``forward_ta`` / ``forward_tia``).

    text+audio (and text only): ``null + sT*(t - null) + sA*(ta - t)`` at every step.
    text+image(+audio): for ``t > step_change``: ``i + sT*(ti - i) + sA*(tia - ti)`` (image kept in the
    unconditioned pass); for ``t <= step_change``: ``null + (sT - 2)*(ti - null) + sA*(tia - ti)``.
    Without audio the release's audio term is exactly zero (both passes get zero audio), so it is left out.
    """
    present = _inputs(inputs_present)
    _require_text("release-17b", present)
    params = dict(scale_t=scale_t, scale_a=scale_a, step_change=step_change, late_text_drop=late_text_drop)
    if isinstance(step_change, bool) or not isinstance(step_change, (int, float)) or not 0 <= step_change <= T_MAX:
        raise HumoError(f"guidance step_change {step_change!r}: must be a number in [0, {T_MAX:g}]")
    null = Condition(frozenset(), null_text)
    t = Condition.of("text")
    audio = "audio" in present
    if "image" not in present:
        chain, scales = [null, t], [scale_t]
        if audio:
            chain.append(Condition.of("text", "audio"))
            scales.append(scale_a)
        return GuidanceSchedule((_one_phase(chain, scales),), "release-17b", params)
    i = Condition(frozenset({"image"}), null_text)
    ti = Condition.of("text", "image")
    tail, tail_scales = ([Condition.of("text", "image", "audio")], [scale_a]) if audio else ([], [])
    phases = []
    if step_change < T_MAX:
        phases.append(GuidancePhase(float(step_change), T_MAX, (i, ti, *tail), (scale_t, *tail_scales)))
    if step_change > 0:
        late = scale_t - late_text_drop
        phases.append(GuidancePhase(0.0, float(step_change), (null, ti, *tail), (late, *tail_scales)))
    return GuidanceSchedule(tuple(phases), "release-17b", params)


def release_1_7b(
    inputs_present: Iterable[str],
    *,
    scale_t: float = 7.0,
    scale_a: float = 7.5,
    scale_i: float = 4.0,
    null_text: str = "negative",
) -> GuidanceSchedule:
    """HuMo-1.7B as released (``generate_1_7B.py``): ``neg + sT*(t - neg) + sA*(ta - t) + sI*(tia - ta)``.

    One phase (the 1.7B script has no step switch). Absent inputs drop their link: text+audio is
    ``[neg, t, ta]``; text+image is ``[neg, t, ti]`` with sI (the release's audio link is zero there).
    """
    present = _inputs(inputs_present)
    _require_text("release-1.7b", present)
    chain = [Condition(frozenset(), null_text), Condition.of("text")]
    scales = [scale_t]
    for m, s in (("audio", scale_a), ("image", scale_i)):
        if m in present:
            chain.append(Condition(chain[-1].modalities | {m}))
            scales.append(s)
    params = dict(scale_t=scale_t, scale_a=scale_a, scale_i=scale_i)
    return GuidanceSchedule((_one_phase(chain, scales),), "release-1.7b", params)


def paper(
    inputs_present: Iterable[str],
    *,
    scale_t: float = 7.0,
    scale_i: float = 4.0,
    scale_a: float = 7.5,
    early_scale_t: float = 9.0,
    early_scale_i: float = 4.0,
    early_scale_a: float = 1.0,
    switch: float = 980.0,
    null_text: str = "negative",
) -> GuidanceSchedule:
    """The paper's time-adaptive CFG (arXiv 2509.08519, eq. 4 and "Time-Adaptive CFG").

    Eq. 4: ``null + l_txt*(t - null) + l_img*(ti - t) + l_a*(tia - ti)``. From timestep 1.0 to 0.98 (t > ``switch``)
    a text/image-dominant set of scales (``early_*``), from 0.98 to 0 one that emphasises audio and image.
    The paper gives no numbers: the late defaults are the 1.7B release's scales, the early ones raise text by 2 (as
    the 17B release's switch does) and set audio to 1 (no extra audio guidance while the layout forms).
    """
    present = _inputs(inputs_present)
    late_chain, late_scales = _eq4_chain(present, null_text, {"text": scale_t, "image": scale_i, "audio": scale_a})
    early_chain, early_scales = _eq4_chain(
        present, null_text, {"text": early_scale_t, "image": early_scale_i, "audio": early_scale_a}
    )
    if isinstance(switch, bool) or not isinstance(switch, (int, float)) or not 0 <= switch <= T_MAX:
        raise HumoError(f"guidance switch {switch!r}: must be a number in [0, {T_MAX:g}]")
    phases = []
    if switch < T_MAX:
        phases.append(GuidancePhase(float(switch), T_MAX, tuple(early_chain), tuple(early_scales)))
    if switch > 0:
        phases.append(GuidancePhase(0.0, float(switch), tuple(late_chain), tuple(late_scales)))
    params = dict(
        scale_t=scale_t,
        scale_i=scale_i,
        scale_a=scale_a,
        early_scale_t=early_scale_t,
        early_scale_i=early_scale_i,
        early_scale_a=early_scale_a,
        switch=switch,
    )
    return GuidanceSchedule(tuple(phases), "paper", params)


def static(
    inputs_present: Iterable[str],
    *,
    scale_t: float = 7.0,
    scale_i: float = 4.0,
    scale_a: float = 7.5,
    null_text: str = "negative",
) -> GuidanceSchedule:
    """Eq. 4 with one set of scales for every step (no switch)."""
    present = _inputs(inputs_present)
    chain, scales = _eq4_chain(present, null_text, {"text": scale_t, "image": scale_i, "audio": scale_a})
    params = dict(scale_t=scale_t, scale_i=scale_i, scale_a=scale_a)
    return GuidanceSchedule((_one_phase(chain, scales),), "static", params)


def annealed(
    inputs_present: Iterable[str],
    *,
    scale_t: float = 7.0,
    scale_i: float = 4.0,
    scale_a: float = 7.5,
    end_scale_t: float = 1.0,
    end_scale_i: float = 1.0,
    end_scale_a: float = 1.0,
    null_text: str = "negative",
) -> GuidanceSchedule:
    """OmniHuman-style CFG annealing on eq. 4: each scale goes linearly from ``scale_*`` at t = 1000 to
    ``end_scale_*`` at t = 0. With all end scales 1 the last steps are the plain fully conditioned prediction."""
    present = _inputs(inputs_present)
    chain, start = _eq4_chain(present, null_text, {"text": scale_t, "image": scale_i, "audio": scale_a})
    _, end = _eq4_chain(present, null_text, {"text": end_scale_t, "image": end_scale_i, "audio": end_scale_a})
    params = dict(
        scale_t=scale_t, scale_i=scale_i, scale_a=scale_a, end_scale_t=end_scale_t, end_scale_i=end_scale_i,
        end_scale_a=end_scale_a,
    )  # fmt: skip
    return GuidanceSchedule((_one_phase(chain, start, end),), "annealed", params)


def cfg(inputs_present: Iterable[str], *, scale: float = 5.0, null_text: str = "negative") -> GuidanceSchedule:
    """Plain (Wan) CFG with one scale: ``null + s*(full - null)``, all given inputs dropped together.
    With text only this is Wan2.1's ``[null, t]``."""
    present = _inputs(inputs_present)
    null = Condition(frozenset(), null_text)
    full = Condition(present, null_text)
    chain, scales = ([null], []) if full == null else ([null, full], [scale])
    return GuidanceSchedule((_one_phase(chain, scales),), "cfg", dict(scale=scale))


def none(inputs_present: Iterable[str], *, null_text: str = "negative") -> GuidanceSchedule:
    """No guidance: one pass with every given input."""
    present = _inputs(inputs_present)
    return GuidanceSchedule((_one_phase([Condition(present, null_text)], []),), "none", {})


PRESETS: dict[str, Callable[..., GuidanceSchedule]] = {
    "release-17b": release_17b,
    "release-1.7b": release_1_7b,
    "paper": paper,
    "static": static,
    "annealed": annealed,
    "cfg": cfg,
    "none": none,
}


def preset_names() -> list[str]:
    return list(PRESETS)


def _coerce_param(preset: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, str):
        if not isinstance(value, str):
            raise HumoError(f"guidance preset {preset}: {key} {value!r} must be a string")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise HumoError(f"guidance preset {preset}: {key} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HumoError(f"guidance preset {preset}: {key} {value!r} is not a finite number")
    return float(value)


def schedule_from_spec(name: str, inputs_present: Iterable[str], **overrides: Any) -> GuidanceSchedule:
    """A preset by name, built for the inputs that are present, with parameter overrides.

    ``schedule_from_spec("release-17b", {"text", "image", "audio"}, scale_a=6.0)``. Unknown names or parameters
    raise HumoError listing the accepted ones.
    """
    fn = PRESETS.get(name)
    if fn is None:
        raise HumoError(f"guidance preset {name!r}: unknown; choose one of {', '.join(PRESETS)}")
    sig = inspect.signature(fn)
    accepted = {k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    kwargs = {}
    for key, value in overrides.items():
        if key not in accepted:
            raise HumoError(f"guidance preset {name}: unknown parameter {key!r}; it takes {', '.join(accepted)}")
        kwargs[key] = _coerce_param(name, key, value, accepted[key])
    return fn(inputs_present, **kwargs)


_PHASE_KEYS = {"t_min", "t_max", "chain", "scales", "end_scales", "null_text"}


def schedule_from_dict(spec: Mapping[str, Any] | Sequence[Any], inputs_present: Iterable[str] | None = None):
    """A schedule from plain data (a parsed ``--guidance-config`` file).

    Either a preset with overrides::

        {"preset": "release-17b", "scale_a": 6.0}          # needs inputs_present

    or explicit phases (a list of them, or ``{"name": ..., "phases": [...]}``)::

        {"phases": [
          {"t_min": 980, "t_max": 1000, "chain": [["image"], ["text", "image"], ["text", "image", "audio"]],
           "scales": [5.0, 5.5]},
          {"t_min": 0, "t_max": 980, "chain": ["null", "ti", "tia"], "scales": [3.0, 5.5],
           "null_text": "negative"}]}

    A chain entry is a list of modality names or a short name ("tia", "null"); ``end_scales`` (optional) anneals
    the scales linearly to t_min. When ``inputs_present`` is given, conditions needing absent inputs are an error.
    """
    if isinstance(spec, Mapping) and "preset" in spec:
        if inputs_present is None:
            raise HumoError("guidance config: a preset needs to know which inputs are present")
        params = {k: v for k, v in spec.items() if k != "preset"}
        if isinstance(params.get("params"), Mapping):
            params = {**{k: v for k, v in params.items() if k != "params"}, **params["params"]}
        params.pop("name", None)
        return schedule_from_spec(str(spec["preset"]), inputs_present, **params)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"name", "phases", "params"})
        if unknown:
            raise HumoError(f"guidance config: unknown key {unknown[0]!r}; expected preset, or name and phases")
        name = str(spec.get("name", "custom"))
        phases_spec = spec.get("phases")
        params = spec.get("params", {}) or {}
    else:
        name, phases_spec, params = "custom", spec, {}
    if not isinstance(phases_spec, (list, tuple)) or not phases_spec:
        raise HumoError("guidance config: 'phases' must be a non-empty list")
    phases = []
    for n, ph in enumerate(phases_spec):
        where = f"guidance config phase {n + 1}"
        if not isinstance(ph, Mapping):
            raise HumoError(f"{where}: must be a mapping with t_min, t_max, chain, scales")
        unknown = sorted(set(ph) - _PHASE_KEYS)
        if unknown:
            raise HumoError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(sorted(_PHASE_KEYS))}")
        for key in ("t_min", "t_max", "chain", "scales"):
            if key not in ph:
                raise HumoError(f"{where}: missing {key!r}")
        null_text = ph.get("null_text", "negative")
        if not isinstance(ph["chain"], (list, tuple)) or not isinstance(ph["scales"], (list, tuple)):
            raise HumoError(f"{where}: chain and scales must be lists")
        chain = tuple(Condition.parse(c, null_text) for c in ph["chain"])
        end = ph.get("end_scales")
        if end is not None and not isinstance(end, (list, tuple)):
            raise HumoError(f"{where}: end_scales must be a list")
        phases.append(GuidancePhase(ph["t_min"], ph["t_max"], chain, tuple(ph["scales"]), end))
    schedule = GuidanceSchedule(tuple(phases), name, dict(params))
    if inputs_present is not None:
        schedule.check_inputs(inputs_present)
    return schedule


def load_schedule(path: str | Path, inputs_present: Iterable[str] | None = None) -> GuidanceSchedule:
    """Read a ``--guidance-config`` file (.json, or .yaml/.yml) and build its schedule (see schedule_from_dict)."""
    p = require_file(path, "guidance config")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml  # PyYAML comes with huggingface_hub/accelerate

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # JSONDecodeError, yaml.YAMLError, UnicodeDecodeError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HumoError(f"guidance config {p}: cannot parse ({first})") from None
    try:
        return schedule_from_dict(data, inputs_present)
    except HumoError as e:
        raise HumoError(f"{p}: {e}") from None

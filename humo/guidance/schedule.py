"""Guidance's types and evaluation: conditions, phases, schedules, the combination formula and the batched guided
prediction (the package docstring, `humo.guidance`, explains the method)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from humo.conditioning import MODALITIES as _REGISTRY
from humo.conditioning import modality_names
from humo.constants import NULL_TEXTS
from humo.errors import HumoError

# The registered modalities (humo.conditioning): names in canonical order, and their letters in short names.
MODALITIES = modality_names()
T_MAX = 1000.0

_LETTER = {name: m.letter for name, m in _REGISTRY.items()}
_FROM_LETTER = {v: k for k, v in _LETTER.items()}


# ---------------------------------------------------------------------------------------------------------------
# Conditions


@dataclass(frozen=True)
class Condition:
    """Which inputs one forward pass sees.

    Attributes:
        modalities: a subset of {"text", "image", "audio", "pose"}; the others get their null input.
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
        """Short name: "tia", "ti", "ta", "t", "i", "tiap", "p", "null" (suffix "~empty" when the null text is
        empty)."""
        base = "".join(_LETTER[m] for m in MODALITIES if m in self.modalities) or "null"
        return base if self.text_source != "empty" else f"{base}~empty"

    def to_list(self) -> list[str]:
        """Modality names in canonical order (text, image, audio, pose)."""
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

    def keeping(self, modalities: Iterable[str]) -> GuidanceSchedule:
        """The same schedule with `modalities` in every condition of every phase: inputs every pass sees, none
        guided (the chains stay nested, the scales apply to the same differences)."""
        extra = frozenset(modalities)
        if not extra:
            return self
        phases = tuple(
            dataclasses.replace(p, chain=tuple(Condition(c.modalities | extra, c.null_text) for c in p.chain))
            for p in self.phases
        )
        return GuidanceSchedule(phases, self.name, self.params)

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

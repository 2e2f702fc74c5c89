"""Guidance presets: functions of (inputs present, **params) -> GuidanceSchedule, the release's and the paper's.

Every preset guides text, image and audio only. A pose, when given, is in every pass of every preset
(`keeps_unguided`): OmniHuman-1 applies classifier-free guidance to audio and text only and keeps its pose on,
since a pass without the pose would pull the motion away from the driving pose. A `--guidance-config` whose
phases name pose guides it as written (`humo.guidance.parsing`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence

from humo.errors import HumoError
from humo.guidance.schedule import MODALITIES, T_MAX, Condition, GuidancePhase, GuidanceSchedule, _inputs

# Inputs no preset guides: when given, every pass of every preset sees them.
UNGUIDED = frozenset({"pose"})


def keeps_unguided(preset: Callable[..., GuidanceSchedule]) -> Callable[..., GuidanceSchedule]:
    """A preset built on the guided inputs present, with the `UNGUIDED` ones given added to all its passes."""

    @functools.wraps(preset)
    def build(inputs_present: Iterable[str], **params) -> GuidanceSchedule:
        present = _inputs(inputs_present)
        return preset(present - UNGUIDED, **params).keeping(present & UNGUIDED)

    return build


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


@keeps_unguided
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


@keeps_unguided
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


@keeps_unguided
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


@keeps_unguided
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


@keeps_unguided
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


@keeps_unguided
def cfg(inputs_present: Iterable[str], *, scale: float = 5.0, null_text: str = "negative") -> GuidanceSchedule:
    """Plain (Wan) CFG with one scale: ``null + s*(full - null)``, all given inputs dropped together.
    With text only this is Wan2.1's ``[null, t]``."""
    present = _inputs(inputs_present)
    null = Condition(frozenset(), null_text)
    full = Condition(present, null_text)
    chain, scales = ([null], []) if full == null else ([null, full], [scale])
    return GuidanceSchedule((_one_phase(chain, scales),), "cfg", dict(scale=scale))


@keeps_unguided
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


def preset_parameters(name: str) -> dict:
    """A guidance preset's parameters (its keyword-only arguments) and their defaults, in order."""
    params = inspect.signature(PRESETS[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def preset_names() -> list[str]:
    return list(PRESETS)

"""Guidance schedules from names and files: a preset with parameter overrides, a dict, or a JSON/YAML file (format in
docs/guidance-config.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from humo.errors import HumoError, first_line, require_file
from humo.guidance.presets import PRESETS, UNGUIDED, preset_parameters
from humo.guidance.schedule import Condition, GuidancePhase, GuidanceSchedule, _inputs


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
    accepted = preset_parameters(name)
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
    the scales linearly to t_min. When ``inputs_present`` is given, conditions needing absent inputs are an error,
    and an unguided input (pose, see `humo.guidance.presets`) given but named by no condition is added to all of
    them, as the presets do; phases that name it guide it as written.
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
        present = _inputs(inputs_present)
        schedule = schedule.keeping((present & UNGUIDED) - schedule.modalities_used())
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
        raise HumoError(f"guidance config {p}: cannot parse ({first_line(e)})") from None
    try:
        return schedule_from_dict(data, inputs_present)
    except HumoError as e:
        raise HumoError(f"{p}: {e}") from None


def parse_guidance_set(items: Iterable[str]) -> dict[str, str]:
    """``--guidance-set KEY=VALUE`` items -> {key: value}; the values are typed by the preset when its schedule is
    built (`schedule_from_spec`)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HumoError(f"--guidance-set {item}: expected KEY=VALUE")
        params[key.strip()] = value.strip()
    return params

"""OmniHuman-1's omni-condition training schedule as data: stages that add conditions in the paper's order.

OmniHuman-1 (arXiv 2502.01061, Sec. 3.2) trains one model on data of mixed quality with two principles:

1. a task with a stronger condition can use the data of the weaker tasks: a clip whose audio or pose is unusable
   still trains text and reference;
2. the stronger the condition, the lower its training ratio: text, reference, audio and pose progressively halved.

and three stages: text and reference; + audio; + pose. Here both principles are `TrainConfig.condition_ratios`
(the one keep rule: `objective.keep_ratios`, `conditioning.keep_for_training`), and a schedule is a list of
stages, each a set of TrainConfig fields over the base config (``configs/omnihuman.json``)::

    humo train --config configs/toy.json --omni 1 --set out=runs/o1 --set init=runs/s0/final/ema.safetensors
    humo train --config configs/toy.json --omni 2 --set out=runs/o2 --set init=runs/o1/final/ema.safetensors
    humo train --config configs/toy.json --omni 3 --set out=runs/o3 --set init=runs/o2/final/ema.safetensors
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humo.errors import HumoError, read_json_file

PRESET = Path(__file__).resolve().parents[2] / "configs" / "omnihuman.json"


@dataclass(frozen=True)
class OmniStage:
    """One stage of a schedule: its name and the TrainConfig fields it sets over the base config."""

    name: str
    fields: dict

    @property
    def ratios(self) -> dict[str, float]:
        return self.fields["condition_ratios"]

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions the stage trains (ratio above 0), weakest first."""
        from humo.conditioning import STRENGTH

        return tuple(m for m in STRENGTH if self.ratios.get(m, 0) > 0)


def check_schedule(stages: list[OmniStage], source: str = "omni schedule") -> None:
    """Every stage sets `condition_ratios`; the conditions it trains are the first few of the paper's order
    (text < reference < audio < pose), and each stage adds at least one to the previous one's."""
    from humo.conditioning import STRENGTH

    if not stages:
        raise HumoError(f"{source}: no stages")
    before = 0
    for k, st in enumerate(stages, 1):
        if not isinstance(st.fields.get("condition_ratios"), dict):
            raise HumoError(f"{source}: stage {k} ({st.name}) sets no condition_ratios")
        got = st.conditions
        if got != STRENGTH[: len(got)]:
            raise HumoError(
                f"{source}: stage {k} ({st.name}) trains {', '.join(got) or 'nothing'}: conditions come in the order "
                f"{' < '.join(STRENGTH)}, each with every weaker one"
            )
        if len(got) <= before:
            raise HumoError(f"{source}: stage {k} ({st.name}) adds no condition to the stage before it")
        before = len(got)


def load_schedule(path: str | os.PathLike | None = None) -> list[OmniStage]:
    """The stages of a schedule file (default: the paper's, ``configs/omnihuman.json``), checked."""
    p = Path(path) if path is not None else PRESET
    data = read_json_file(p, "omni schedule")
    raw = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not all(isinstance(s, dict) and isinstance(s.get("set"), dict) for s in raw):
        raise HumoError(f'omni schedule {p}: expected {{"stages": [{{"name": ..., "set": {{fields}}}}, ...]}}')
    stages = [OmniStage(str(s.get("name", f"stage {k}")), dict(s["set"])) for k, s in enumerate(raw, 1)]
    check_schedule(stages, f"omni schedule {p}")
    return stages


def stage_fields(stages: list[OmniStage], number: int, **ratios: float) -> dict[str, Any]:
    """The TrainConfig fields of stage `number` (1-based), with some condition ratios replaced (e.g. ``audio=0.1``
    for the ratio study)."""
    if not 1 <= number <= len(stages):
        raise HumoError(f"--omni {number}: the schedule has stages 1 to {len(stages)}")
    fields = json.loads(json.dumps(stages[number - 1].fields))
    fields["condition_ratios"] = {**fields["condition_ratios"], **ratios}
    return fields

"""A study's ledger: what its finished runs measured, kept beside the code so that a study outlives its machine.

A study (`humo ablate`, `humo ratios`) trains for many hours, and its run folder (``OUT``: checkpoints, logs) lives on
one machine. The ledger is a small folder meant to be committed with the code. It keeps, per run, only what the
tables need:

- ``LEDGER/eval/NAME.json``: every evaluation summary, under the name ``OUT/eval`` gives it;
- ``LEDGER/runs/RUN.json``: the run's record, written once the run is trained and scored: its training
  configuration (the fields that say what it trains), the steps scored, its training time, the machine it trained
  on, and the SHA-256 of the weights it started from and of those it ended with.

A study resumed on another machine reads the ledger and skips every run it records. It trains again only a recorded
run that a run still to train starts from, because that run needs its weights. The recorded run keeps its first
training's scores. Trained on another machine, the new weights are another draw of the same run (the floating-point
sums differ), so `provenance_lines` names every run that started from weights other than those its parent's record
ended with, and the machines the runs trained on.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from humo.errors import HumoError, atomic_path, read_json_file

EVAL_DIR = "eval"
RUNS_DIR = "runs"


def machine() -> dict[str, Any]:
    """What a run trained on, as far as it changes the numbers: the CPU's vector ISA (as torch sees it), torch."""
    import torch

    return {
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


# Training-config fields that say where and how a run is carried out, not what it trains: a stored run may differ in
# them (another cwd's paths, another machine) and still be the same run.
PLACE_FIELDS = ("cache", "out", "progress", "tensorboard", "resume", "device", "num_workers", "log_every",
                "distributed")  # fmt: skip


def config_differences(stored: dict[str, Any], intended: dict[str, Any]) -> list[str]:
    """'KEY STORED (stored) vs INTENDED (this study)' for each field of `intended` that `stored` holds with another
    value: the `PLACE_FIELDS` and the fields `stored` lacks (older code) left out, ``init`` paths resolved."""

    def same(key: str, a: Any, b: Any) -> bool:
        if key == "init" and isinstance(a, str) and isinstance(b, str):
            return os.path.realpath(a) == os.path.realpath(b)
        return a == b

    return [
        f"{k} {stored[k]!r} (stored) vs {v!r} (this study)"
        for k, v in intended.items()
        if k in stored and k not in PLACE_FIELDS and not same(k, stored[k], v)
    ]


class Ledger:
    """A study's ledger at `root` (None: none, and the study keeps its results in `out` only), beside the study's
    run folder `out`. `who` names the study in errors. `scoring`: the fields every evaluation summary must hold
    with these values (the study's held-out clips and sampling steps), so that a study resumed with other scoring
    settings never mixes its scores with the stored ones."""

    def __init__(self, root: str | os.PathLike | None, out: str | os.PathLike, who: str = "ablate",
                 scoring: dict[str, Any] | None = None):  # fmt: skip
        self.root = Path(root) if root else None
        self.out, self.who = Path(out), who
        self.scoring = dict(scoring or {})

    def evaluation(self, name: str, compute: Callable[[], dict] | None = None) -> dict:
        """The evaluation summary ``NAME``: from ``OUT/eval``, else the ledger, else `compute()` (then written to
        both; a summary found in ``OUT/eval`` only is copied to the ledger). Without `compute` it is only read,
        and written nowhere (a report), and a missing summary is an error."""
        local = self.out / EVAL_DIR / name
        kept = self.root / EVAL_DIR / name if self.root else None
        if not local.is_file():
            if kept is not None and kept.is_file():
                return self._scored_alike(kept, read_json_file(kept, f"{self.who} ledger evaluation"))
            if compute is None:
                raise HumoError(f"{self.who}: evaluation {name} is in neither {local.parent} nor {kept}")
        result = self._scored_alike(local, json_memo(local, compute))
        if compute is not None and kept is not None and not kept.is_file():
            _write_json(kept, result)
        return result

    def _scored_alike(self, path: Path, summary: dict) -> dict:
        differ = [f"{k} {summary.get(k)!r} (stored) vs {v!r} (this study)" for k, v in self.scoring.items()
                  if summary.get(k) != v]  # fmt: skip
        if differ:
            raise HumoError(
                f"{self.who}: evaluation {path} was scored with other settings: {'; '.join(differ)}; use another "
                "study folder and ledger (or remove it to score again)"
            )
        return summary

    def has_evaluation(self, name: str) -> bool:
        return (self.out / EVAL_DIR / name).is_file() or bool(self.root and (self.root / EVAL_DIR / name).is_file())

    def portable(self, path: str | os.PathLike) -> str:
        """A path as the ledger writes it: under the study's run folder, ``OUT/...`` (a run's parent is the same
        run wherever the folder is); elsewhere, as given."""
        try:
            return "OUT/" + Path(os.path.realpath(path)).relative_to(os.path.realpath(self.out)).as_posix()
        except ValueError:
            return str(path)

    def _what(self, intended: dict[str, Any]) -> dict[str, Any]:
        """The fields of a run config that say what the run trains, its start made portable."""
        what = {k: v for k, v in intended.items() if k not in PLACE_FIELDS}
        if isinstance(what.get("init"), str):
            what["init"] = self.portable(what["init"])
        return what

    def record(self, name: str, intended: dict[str, Any]) -> dict[str, Any] | None:
        """The ledger's record of run `name` (None: not recorded). A record of a run trained with another
        configuration than `intended` is a one-line error: its results would mix into this study's tables."""
        if self.root is None or not (self.root / RUNS_DIR / f"{name}.json").is_file():
            return None
        path = self.root / RUNS_DIR / f"{name}.json"
        rec = read_json_file(path, f"{self.who} ledger record")
        differ = config_differences(rec.get("config", {}), self._what(intended))
        if differ:
            raise HumoError(
                f"{self.who}: run {name} in the ledger {path} was trained with another configuration: "
                f"{'; '.join(differ)}; use another ledger (or remove that record)"
            )
        return rec

    def write_record(self, run: dict[str, Any], intended: dict[str, Any], steps: Iterable[int],
                     seconds: float | None, write: bool = True) -> dict[str, Any]:  # fmt: skip
        """Record a trained and scored run (its export and its start must be on disk) -> the record; `write` False:
        the record only, the ledger left as it is (a report)."""
        from humo.data.precompute import file_digest

        export = Path(run["out"]) / "final" / "ema.safetensors"
        init = intended.get("init")
        rec = {
            "name": run["name"],
            "config": self._what(intended),
            "eval_steps": sorted(steps),
            "training_seconds": seconds,
            "machine": machine(),
            "init": self.portable(init) if init else None,
            "init_sha256": file_digest(init) if init and Path(init).is_file() else None,
            "export": self.portable(export),
            "export_sha256": file_digest(export),
        }
        if self.root is not None and write:
            _write_json(self.root / RUNS_DIR / f"{run['name']}.json", rec)
        return rec


def json_memo(path: Path, compute: Callable[[], dict] | None) -> dict:
    """The JSON file `path`, or `compute()` written there (atomically) first."""
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    _write_json(path, result)
    return result


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))


def runs_to_train(runs: list[dict[str, Any]], recorded: set[str], needed: Iterable[str] = ()) -> set[str]:
    """The names of the runs to train (or resume, or find trained): those the ledger does not record, and each
    recorded run whose weights a run to train starts from or `needed` names (export paths) and which are not on
    disk. `runs` is in training order (each after the run it starts from)."""
    want = {os.path.realpath(p) for p in needed}
    out = set()
    for run in reversed(runs):
        export = Path(run["out"]) / "final" / "ema.safetensors"
        if run["name"] not in recorded or (os.path.realpath(export) in want and not export.is_file()):
            out.add(run["name"])
            if run["overrides"].get("init"):
                want.add(os.path.realpath(run["overrides"]["init"]))
    return out


def progress_lines(results: dict[str, Any]) -> list[str]:
    """Markdown lines heading the tables of a study still in progress (a report: `run_study(..., report=True)`):
    how many of its runs are finished, since its means and verdicts cover those only. None when all are."""
    done, planned = len(results.get("runs") or {}), results.get("planned_runs")
    if planned is None or done >= planned:
        return []
    return [
        f"**In progress: {done} of {planned} runs finished.** The tables hold only the finished runs (a row's mean is "
        "over the seeds it has so far), and a verdict waits for every seed.",
        "",
    ]


def provenance_lines(records: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines on where a study's runs were trained: the machines, and each run that started from weights
    other than those its parent's record ended with (its parent was trained again, on another machine)."""
    if not records:
        return []
    machines = Counter(r.get("machine", {}).get("cpu", "?") for r in records.values())
    ended = {r["export"]: r for r in records.values() if r.get("export")}
    moved = []
    for r in records.values():
        parent = ended.get(r.get("init"))
        if parent and r.get("init_sha256") and r["init_sha256"] != parent.get("export_sha256"):
            moved.append(f"{r['name']} (from {parent['name']})")
    starts = Counter(r["init_sha256"][:12] for r in records.values() if r.get("init_sha256") and r["init"] not in ended)
    cpus = ", ".join(f"{cpu} ({n})" for cpu, n in sorted(machines.items()))
    outside = ", ".join(f"{h} x{n}" for h, n in sorted(starts.items()))
    lines = [
        "",
        f"Runs recorded in the ledger: {len(records)}, trained on {cpus}; the weights they start from outside the "
        f"study (the recipe's backbone): {len(starts)} distinct ({outside}).",
    ]
    if moved:
        lines.append(
            "Started from a parent trained again on another machine (the parent's scores are its first training's): "
            + ", ".join(sorted(moved))
            + "."
        )
    return lines

"""The stage framework: records, journals, resume, the map over clips, the summary.

A **record** is a JSON-able dict describing one clip as it goes through the stages:

    {"id": "talk1", "clip": "talk1", "source": "/abs/talk1.mp4", "status": "kept", ...facts...}

``id`` is unique in the run (a segment's id extends its clip's), ``clip`` is the id of the input video it came
from, ``status`` is ``"kept"`` or ``"dropped"``; a dropped record also has ``stage``, ``reason`` (a short code,
counted in summaries) and ``detail`` (one line for a person). ``video``, ``audio``, ``fps``, ``num_frames``,
``width`` and ``height`` describe the clip's current media (paths relative to OUT); each stage puts its own facts
under its name (``record["probe"]``, ``record["speech"]``, ...).

A **stage** is a module ``humo.data.pipeline.stages.<name>`` with

    VERSION: int            bump when the stage's outputs change: lines of another version are redone
    PARAMS: tuple[str]      the `Settings` fields it reads: a change of one of them redoes the stage
    REQUIRES: tuple[str]    importable modules it needs (checked before any work)
    REASONS: dict[str,str]  its drop reasons and what they mean (the docs and the tests read them)
    process(record, settings) -> record | list[record]   raise `Drop`, or return `dropped(...)` records
    finish(records, settings) -> str | None               optional: after the map, over the kept records
    GROUP: bool             optional: map over input videos instead of clips. `process` then gets one record per
                            input video, ``{"id": clip, "clip": clip, "records": [its clips' records]}``, and
                            returns its clips' records (a stage that looks across a video's segments: references)
    key_extra(record, settings) -> JSON-able   optional: state outside the record that the stage's result depends
                            on, folded into the key (captions: the text of a caption file a person edited)
    KEEP_FOLDER: bool       optional: ``--force`` keeps the stage's folder (captions: it holds people's edits)
    SPAWN: bool             optional: its worker processes start afresh instead of forked (captions: torch with
                            a model loaded in the parent may hang in a forked child)

**Journals.** ``OUT/stages/<name>.jsonl`` has one line per input record of the stage:
``{"input": id, "key": fingerprint, "seconds": s, "records": [outputs]}``, written with one ``write`` as soon as the
clip is done, so a killed run loses only the clips in flight (a torn last line is cut off on the next open). The
key is a hash of the input record, the stage's VERSION and its PARAMS: a rerun reuses a line whose key matches
and whose output files still exist, and redoes the others (an input that changed upstream, a changed setting).
The latest line of an input wins; ``--force`` starts a stage's journal and folder afresh.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from humo.errors import HumoError, atomic_path, first_line, warn

#: The stages in the order they run; each is `humo.data.pipeline.stages.<name>`.
STAGES = (
    "probe",
    "normalise",
    "shots",
    "segments",
    "speech",
    "faces",
    "sync",
    "references",
    "captions",
    "manifest",
)
#: How a stage's clips are mapped: here (in this process or a pool of processes) or on a Ray cluster (Ray Data).
EXECUTORS = ("local", "ray")
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
JOURNALS = "stages"
RUN_VERSION = 1

Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a stage may read besides its record (picklable, so worker processes get it whole).

    out: the run folder. min_frames / max_frames: segment lengths (4k+1 frames at 25 fps). max_side: the longest
    side (pixels) of normalised video. detector: PySceneDetect's ``content`` or ``adaptive`` detector.
    speech_min: the least share of voiced 30 ms frames (webrtcvad) a kept segment has; vad_mode: webrtcvad's
    aggressiveness 0..3. modulation_min: the least loudness modulation (dB) a kept segment has (a steady tone or
    noise has almost none; webrtcvad takes both for speech). val_share: share of input videos (all their
    segments) put in the ``val`` split. face_missing_max: the largest share of a segment's frames without a face
    it may have and be kept. several_faces: ``drop`` (default) or ``keep`` segments showing two or more large faces.
    face_min_height: the least median height of the tracked face, as a share of the frame's height.
    face_lost_max: the most frames in a row the tracked face may be missing. sync_min: the least lip-sync
    confidence (Sync-C of the mouth against the loudness envelope; 0 turns the filter off); sync_offset_max: the
    largest best offset, frames, of a kept segment; sync_shift_max: the largest best offset by which a segment's
    audio is shifted into sync instead (0: never). syncnet: user-supplied SyncNet weights (a path) whose Sync-C is
    recorded and must reach syncnet_min (0: recorded only); syncnet_id: the weights' size and modification time
    (set by the command, so that new weights at the same path redo the stage). weak_audio: ``drop`` (default) or
    ``keep`` segments whose sound fails speech or sync: kept, they go on without their audio (`without_audio`) to
    train text and reference. no_reference: ``drop`` (default)
    or ``keep`` segments for which no reference image outside the segment was found. reference_distance_max: the
    largest face-embedding distance (`humo.face_identity.distance`) at which a segment of another shot is the same
    person and may give the reference; 0 turns references from other shots off. identity_model: the face-embedding
    model the run has (set by `humo data run`, not by the user: ``""`` without the ``identity`` extra), so that
    installing it redoes the references.
    """

    out: Path
    min_frames: int = 33
    max_frames: int = 97
    max_side: int = 1280
    detector: str = "content"
    speech_min: float = 0.3
    vad_mode: int = 2
    modulation_min: float = 1.5
    val_share: float = 0.0
    face_missing_max: float = 0.5
    several_faces: str = "drop"
    face_min_height: float = 0.1
    face_lost_max: int = 12
    sync_min: float = 0.6
    sync_offset_max: int = 3
    sync_shift_max: int = 0
    syncnet: str | None = None
    syncnet_min: float = 3.0
    syncnet_id: str = ""
    weak_audio: str = "drop"
    no_reference: str = "drop"
    reference_distance_max: float = 0.5
    identity_model: str = ""
    caption_model: str | None = None
    caption_frames: int = 4
    caption_tokens: int = 120

    def values(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The named fields (all but `out` by default) as JSON-able values."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "out"] if names is None else names
        return {n: getattr(self, n) for n in names}


# ---------------------------------------------------------------------------------------------------------------
# Records


class Drop(Exception):
    """Raised inside a stage to drop the clip: `reason` is a short code (counted), `detail` one line (shown)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def dropped(record: Record, reason: str, detail: str, stage: str | None = None) -> Record:
    """`record` marked dropped, keeping its facts (the runner fills in `stage`)."""
    out = {**record, "status": "dropped", "reason": reason, "detail": detail}
    if stage is not None:
        out["stage"] = stage
    return out


def without_audio(record: Record, settings: Settings, stage: str, reason: str, detail: str) -> Record:
    """A segment whose sound is too weak for the audio condition (no speech, out of sync, ...): dropped, or with
    ``weak_audio`` ``keep`` kept without its audio (``audio`` null, ``audio_dropped`` saying where and why), so
    that it still trains the weaker conditions, text and reference (OmniHuman-1's first principle: data too weak
    for a strong condition still trains the weaker tasks)."""
    if settings.weak_audio != "keep":
        return dropped(record, reason, detail)
    return {**record, "audio": None, "audio_dropped": {"stage": stage, "reason": reason, "detail": detail}}


def stage_module(name: str):
    """The module of stage `name` (one module per stage, found by its name)."""
    if name not in STAGES:
        raise HumoError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    return importlib.import_module(f"humo.data.pipeline.stages.{name}")


def apply_stage(name: str, record: Record, settings: Settings) -> tuple[list[Record], float]:
    """Run stage `name` on one record: ``(output records, seconds)``. Never raises for a bad clip: a `Drop` or
    any other exception (a bug, an input nobody foresaw) becomes a dropped record with the reason, so one clip
    cannot stop the run. Pure in (record, settings) apart from the files it writes under OUT, so process pools
    (and later Ray Data's ``flat_map``) can map it."""
    start = time.perf_counter()
    members = record["records"] if getattr(stage_module(name), "GROUP", False) else [record]
    try:
        result = stage_module(name).process(copy.deepcopy(record), settings)  # the input stays as it was
        outputs = [result] if isinstance(result, dict) else list(result)
    except Drop as d:
        outputs = [dropped(r, d.reason, d.detail) for r in members]
    except Exception as e:  # noqa: BLE001 - recorded per clip, never fatal (see docstring)
        outputs = [dropped(r, "error", f"{type(e).__name__}: {first_line(e)}") for r in members]
    for r in outputs:
        if r.get("status") == "dropped":
            r.setdefault("stage", name)
        else:
            r["status"] = "kept"
    return outputs, time.perf_counter() - start


def record_key(name: str, record: Record, settings: Settings) -> str:
    """The fingerprint of one stage's work on one record: its input, the stage's VERSION and PARAMS."""
    module = stage_module(name)
    extra = module.key_extra(record, settings) if hasattr(module, "key_extra") else None
    blob = json.dumps(
        {
            "stage": name,
            "version": module.VERSION,
            "params": settings.values(module.PARAMS),
            "input": record,
            **({"extra": extra} if extra is not None else {}),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# Journals


class Journal:
    """One stage's append-only results, ``OUT/stages/<stage>.jsonl`` (see the module docstring)."""

    def __init__(self, out: Path, stage: str):
        self.path = Path(out) / JOURNALS / f"{stage}.jsonl"

    def load(self, repair: bool = False) -> dict[str, dict]:
        """input id -> its latest line. A torn last line (a run killed while writing it) is ignored, and with
        `repair` cut off the file so the next line starts clean."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # bytes after the last newline are a line that was never finished
        if end < len(data) and repair:
            with open(self.path, "r+b") as f:
                f.truncate(end)
        lines: dict[str, dict] = {}
        for n, raw in enumerate(data[:end].splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                lines[line["input"]] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                warn(f"{self.path} line {n}: not a journal line, ignored")
        return lines

    def append(self, line: dict) -> None:
        """Add one line with a single write (O_APPEND), so a line is either whole or the torn last one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()


def _files_exist(out: Path, records: list[Record]) -> bool:
    """Whether the media a line's kept records point to are still there (a deleted file redoes the clip)."""
    for r in records:
        if r.get("status") == "kept":
            for key in ("video", "audio", "face_masks", "caption_file"):
                if r.get(key) and not (out / r[key]).is_file():
                    return False
            if not all((out / p).is_file() for p in r.get("ref_images") or []):
                return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# The run folder


def load_run(out: Path) -> dict | None:
    """OUT/run.json (the last run's inputs and settings), or None for a new folder."""
    p = Path(out) / RUN_FILE
    if not p.is_file():
        return None
    try:
        run = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(run, dict) or not isinstance(run.get("inputs"), list):
            raise ValueError("no inputs")
        return run
    except (ValueError, OSError) as e:
        raise HumoError(f"{p}: not a humo data run file ({first_line(e)})") from None


def check_out(out: Path) -> None:
    """OUT must be a new or empty folder, or one a previous `humo data run` made (it has run.json)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HumoError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_FILE).is_file():
        raise HumoError(f"--out {out}: folder is not empty and holds no {RUN_FILE} (not a humo data run folder)")


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold OUT/run.lock (an advisory lock) so that two runs never write the same folder at once."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HumoError(f"--out {out}: another `humo data run` is using this folder") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remove_temporaries(out: Path) -> int:
    """Delete what a killed run left half-written: the hidden temporary files of `atomic_path` (``.name.XXXX``).
    Only under OUT, which the lock says is ours alone now. Returns how many were removed."""
    removed = 0
    for dirpath, _dirs, files in os.walk(out):
        for f in files:
            if f.startswith("."):
                os.unlink(os.path.join(dirpath, f))
                removed += 1
    return removed


# ---------------------------------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass
class StageStats:
    """What one stage did in a run: its inputs, how many it reused from the journal and ran now, its outputs."""

    name: str
    inputs: int = 0
    reused: int = 0
    ran: int = 0
    not_done: int = 0  # inputs without a result (the stage was not selected and had not done them)
    kept: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    audio_dropped: Counter = dataclasses.field(default_factory=Counter)  # kept without audio here (`without_audio`)
    seconds: float = 0.0  # seconds of work on the clips it ran (summed over workers)
    note: str | None = None  # what `finish` said

    def dropped_text(self) -> str:
        """How many it dropped, and why; and how many it kept without their audio, and why."""

        def counts(c: Counter) -> str:
            return ", ".join(f"{r} {n}" for r, n in sorted(c.items(), key=lambda x: (-x[1], x[0])))

        text = f"{sum(self.dropped.values())}" + (f" ({counts(self.dropped)})" if self.dropped else "")
        if self.audio_dropped:
            text += f"; kept without audio {sum(self.audio_dropped.values())} ({counts(self.audio_dropped)})"
        return text


@dataclasses.dataclass
class RunSummary:
    inputs: int
    stages: list[StageStats]
    seconds: float

    @property
    def clips_per_minute(self) -> float:
        """Input videos per minute of wall time over the whole run."""
        return self.inputs / max(self.seconds, 1e-9) * 60

    def text(self) -> str:
        rows = [("stage", "inputs", "reused", "ran", "s/clip", "kept", "dropped")]
        for s in self.stages:
            dropped = s.dropped_text()
            if s.not_done:
                dropped += f"; {s.not_done} not done (stage not run)"
            per_clip = f"{s.seconds / s.ran:.2f}" if s.ran else "-"
            rows.append((s.name, str(s.inputs), str(s.reused), str(s.ran), per_clip, str(s.kept), dropped))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6] for r in rows]
        lines += [s.note for s in self.stages if s.note]
        reused = sum(s.reused for s in self.stages)
        ran = sum(s.ran for s in self.stages)
        lines.append(
            f"{self.inputs} input videos in {self.seconds:.1f} s: {self.clips_per_minute:.1f} clips/min"
            + (f" ({ran} clip-stages ran, {reused} reused from earlier runs)" if reused else "")
        )
        return "\n".join(lines)


def input_records(inputs: list[dict]) -> list[Record]:
    """The records the first stage starts from: one per input video (``{"id", "source"}``). ``stamp`` (size and
    modification time) makes a replaced source file a new input, redone by every stage."""
    return [
        {"id": i["id"], "clip": i["id"], "source": i["source"], "stamp": _stamp(i["source"]), "status": "kept"}
        for i in inputs
    ]


def _stamp(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _pool_context(name: str):
    """How a stage's worker processes start: forked (fast), except for stages that run MediaPipe, whose graph set-up
    aborts in a child forked from a process that already ran it; those get a fresh interpreter each (spawn)."""
    import multiprocessing

    module = stage_module(name)
    if "mediapipe" in module.REQUIRES or getattr(module, "SPAWN", False):
        return multiprocessing.get_context("spawn")
    return None


def _execute(
    name: str, todo: list[Record], settings: Settings, workers: int
) -> Iterator[tuple[Record, list[Record], float]]:
    """Yield ``(input, outputs, seconds)`` for every record of `todo`, in the order they finish (the local executor:
    this process, or a pool of `workers` processes)."""
    if workers <= 1 or len(todo) <= 1:
        for r in todo:
            outputs, seconds = apply_stage(name, r, settings)
            yield r, outputs, seconds
        return
    left = {r["id"]: r for r in todo}
    context = _pool_context(name)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(apply_stage, name, r, settings): r for r in todo}
            for f in as_completed(futures):
                r = futures[f]
                outputs, seconds = f.result()  # BrokenProcessPool when a worker died (a decoder crash, OOM)
                del left[r["id"]]
                yield r, outputs, seconds
    except BrokenProcessPool:
        # A clip killed its worker; which one is unknown. Retry the unfinished ones each in a process of its own:
        # the one that dies again is dropped, the others finish.
        yield from execute_isolated(name, [r for r in todo if r["id"] in left], settings)


def execute_isolated(name: str, todo: list[Record], settings: Settings) -> Iterator[tuple[Record, list[Record], float]]:
    """Each record of `todo` in a process of its own: one that kills its process is dropped ``crashed``, the
    others finish. The retry after a worker died (here or on a Ray cluster)."""
    context = _pool_context(name)
    for r in todo:
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                outputs, seconds = pool.submit(apply_stage, name, r, settings).result()
        except BrokenProcessPool:
            outputs, seconds = [dropped(r, "crashed", "the worker process died on this clip", name)], 0.0
        yield r, outputs, seconds


def run_pipeline(
    inputs: list[dict],
    settings: Settings,
    stages: Iterable[str] = STAGES,
    force: Iterable[str] = (),
    workers: int = 1,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> RunSummary:
    """Run `stages` (a subset of STAGES, run in pipeline order) over `inputs` (``[{"id", "source"}]``) into
    ``settings.out``; stages before the first selected one give their journals' results. `force` stages start
    afresh. `executor` ``local`` maps each stage here (`workers` processes); ``ray`` maps it with Ray Data on the
    cluster at `ray_address` (None: a local one), `workers` actors a stage; both write the same journals and
    outputs. Returns the summary. Argument checks (`check_run`) come first, in the caller."""
    out = Path(settings.out)
    selected = set(stages)
    force = set(force)
    last = max(STAGES.index(s) for s in selected)
    start = time.perf_counter()
    if executor == "ray":
        from humo.data.pipeline import ray_executor

        session, execute = ray_executor.session(workers, ray_address), ray_executor.execute
    else:
        session, execute = contextlib.nullcontext(), _execute
    with run_lock(out), session:
        if removed := remove_temporaries(out):
            warn(f"removed {removed} temporary file(s) a killed run left in {out}")
        run = {
            "version": RUN_VERSION,
            "inputs": inputs,
            "settings": settings.values(),
            "stages": [s for s in STAGES if s in selected],
        }
        with atomic_path(out / RUN_FILE) as tmp:
            tmp.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        records = input_records(inputs)
        summary = []
        for name in STAGES[: last + 1]:
            stats, records = _run_stage(
                name, records, settings, name in selected, name in force, workers, progress, execute
            )
            summary.append(stats)
    return RunSummary(len(inputs), summary, time.perf_counter() - start)


def _run_stage(
    name: str,
    records: list[Record],
    settings: Settings,
    run: bool,
    force: bool,
    workers: int,
    progress: bool,
    execute: Callable = _execute,
) -> tuple[StageStats, list[Record]]:
    """One stage over `records` (the previous stage's kept outputs): reuse, run the rest, finish. Returns its
    stats and its kept outputs."""
    out = Path(settings.out)
    module = stage_module(name)
    journal = Journal(out, name)
    if force:
        journal.reset()
        if not getattr(module, "KEEP_FOLDER", False):
            shutil.rmtree(out / name, ignore_errors=True)
    done = journal.load(repair=run)
    stats = StageStats(name, inputs=len(records))
    if getattr(module, "GROUP", False):
        records = group_by_clip(records)
    results: dict[str, list[Record]] = {}
    keys = {r["id"]: record_key(name, r, settings) for r in records}
    todo = []
    for r in records:
        line = done.get(r["id"])
        if line is not None and line.get("key") == keys[r["id"]] and _files_exist(out, line["records"]):
            results[r["id"]] = line["records"]
            stats.reused += 1
        elif run:
            todo.append(r)
        else:
            stats.not_done += 1
    if todo:
        bar = _progress(name, len(todo), progress)
        for r, outputs, seconds in execute(name, todo, settings, workers):
            journal.append({"input": r["id"], "key": keys[r["id"]], "seconds": round(seconds, 3), "records": outputs})
            results[r["id"]] = outputs
            stats.ran += 1
            stats.seconds += seconds
            bar(outputs)
        bar(None)
    outputs = [o for r in records for o in results.get(r["id"], [])]
    kept = [o for o in outputs if o["status"] == "kept"]
    stats.kept = len(kept)
    stats.dropped = Counter(o["reason"] for o in outputs if o["status"] != "kept")
    stats.audio_dropped = Counter(o["audio_dropped"]["reason"] for o in kept
                                  if (o.get("audio_dropped") or {}).get("stage") == name)  # fmt: skip
    if run and hasattr(module, "finish"):
        stats.note = module.finish(kept, settings)
    return stats, kept


def group_by_clip(records: list[Record]) -> list[Record]:
    """The records of a `GROUP` stage's map: one per input video, holding its clips' records in order."""
    groups: dict[str, Record] = {}
    for r in records:
        groups.setdefault(r["clip"], {"id": r["clip"], "clip": r["clip"], "records": []})["records"].append(r)
    return list(groups.values())


def _progress(name: str, total: int, enabled: bool) -> Callable[[list[Record] | None], None]:
    """A tqdm bar on stderr for one stage (nothing when disabled): call with each result, then with None."""
    if not enabled:
        return lambda outputs: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"{name:9s}", unit="clip", file=sys.stderr, dynamic_ncols=True)
    counts = Counter()

    def update(outputs: list[Record] | None) -> None:
        if outputs is None:
            bar.close()
            return
        counts.update("kept" if o["status"] == "kept" else "dropped" for o in outputs)
        bar.set_postfix(kept=counts["kept"], dropped=counts["dropped"], refresh=False)
        bar.update(1)

    return update


# ---------------------------------------------------------------------------------------------------------------
# Status


def run_status(out: Path) -> RunSummary:
    """What OUT holds, stage by stage, as the last run left it (nothing is run): for each stage its inputs, the
    ones done (journal lines valid for the last run's settings), kept and dropped by reason."""
    out = Path(out)
    run = load_run(out)
    if run is None:
        raise HumoError(f"{out}: not a humo data run folder (no {RUN_FILE})")
    known = {f.name for f in dataclasses.fields(Settings)}
    settings = Settings(out=out, **{k: v for k, v in run.get("settings", {}).items() if k in known})
    records = input_records(run["inputs"])
    stats = []
    for name in STAGES:
        if not Journal(out, name).path.exists():
            break
        s, records = _run_stage(name, records, settings, run=False, force=False, workers=1, progress=False)
        stats.append(s)
    return RunSummary(len(run["inputs"]), stats, 0.0)

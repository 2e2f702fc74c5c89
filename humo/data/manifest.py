"""The dataset manifest: one sample per line of JSONL (or one row of Parquet), paths relative to the manifest.

The same format serves the proving ground's synthetic clips and real data; `docs/data-format.md` documents
every field. A sample is a video clip with its caption, reference images, optional driving audio and optional
per-frame face masks; `meta` is free-form (the proving ground keeps its ground truth there).

    samples = read_manifest("data/manifest.jsonl")   # validated; HumoError names the line and the field
    samples[0].video_path                             # absolute Path, resolved against the manifest's folder
    write_manifest("out/manifest.jsonl", samples)     # atomic
    merge_manifests(["a/manifest.jsonl", "b/manifest.jsonl"], "ab/manifest.jsonl")  # paths rebased
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from humo.errors import HumoError, atomic_path, require_file

SPLITS = ("train", "val", "test")
#: The fields of a manifest line, in the order they are written.
FIELDS = (
    "id",
    "video",
    "caption",
    "ref_images",
    "audio",
    "person_audio",
    "face_masks",
    "pose",
    "split",
    "fps",
    "num_frames",
    "height",
    "width",
    "meta",
)
#: The fields naming one file each, and those naming a list of files (paths relative to the manifest's folder).
FILE_FIELDS = ("video", "audio", "face_masks", "pose")
FILE_LIST_FIELDS = ("ref_images", "person_audio")
OPTIONAL = {"audio": None, "person_audio": [], "face_masks": None, "pose": None, "ref_images": [], "meta": {}}


@dataclass
class Sample:
    """One clip. Paths are as written in the manifest (relative to its folder, or absolute); `root` is that
    folder (set by `read_manifest`, not written) and the ``*_path`` properties resolve against it.

    face_masks: an ``.npz`` holding ``masks`` uint8/bool ``[num_frames, height, width]`` (1 = face).
    pose: a pose file (`humo.pose`) of the clip's frames, for a DiT with a pose guider (the proving ground's pose
    tracks are in its face-mask ``.npz`` instead).
    person_audio: with several people (InterActHuman), each one's own audio track, in the order of `ref_images`
    (`audio` is then their mix); their regions are the face-mask ``.npz``'s ``person_masks`` [P, T, H, W].
    """

    id: str
    video: str
    caption: str
    ref_images: list[str] = field(default_factory=list)
    audio: str | None = None
    face_masks: str | None = None
    pose: str | None = None
    split: str = "train"
    fps: float = 25.0
    num_frames: int = 0
    height: int = 0
    width: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    person_audio: list[str] = field(default_factory=list)  # last: positional construction keeps its order
    root: Path | None = field(default=None, repr=False, compare=False)

    def resolve(self, path: str | None) -> Path | None:
        """A manifest path as an absolute-or-root-relative Path (None stays None)."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p

    @property
    def video_path(self) -> Path:
        return self.resolve(self.video)

    @property
    def audio_path(self) -> Path | None:
        return self.resolve(self.audio)

    @property
    def face_masks_path(self) -> Path | None:
        return self.resolve(self.face_masks)

    @property
    def pose_path(self) -> Path | None:
        return self.resolve(self.pose)

    @property
    def ref_image_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.ref_images]

    @property
    def person_audio_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.person_audio]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _check(where: str, name: str, value: Any) -> Any:
    """Validate one field's value; returns it normalised (ints from integral floats, lists copied)."""

    def bad(msg: str) -> HumoError:
        return HumoError(f"{where}: field '{name}' {msg}")

    if name in ("id", "video", "caption"):
        if not isinstance(value, str) or (name != "caption" and not value):
            raise bad(f"must be a {'non-empty ' if name != 'caption' else ''}string, got {value!r:.60}")
        return value
    if name in ("audio", "face_masks", "pose"):
        if value is not None and (not isinstance(value, str) or not value):
            raise bad(f"must be a path string or null, got {value!r:.60}")
        return value
    if name in ("ref_images", "person_audio"):
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise bad(f"must be a list of path strings, got {value!r:.60}")
        return list(value)
    if name == "split":
        if value not in SPLITS:
            raise bad(f"must be one of {', '.join(SPLITS)}, got {value!r:.60}")
        return value
    if name == "fps":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad(f"must be a positive number, got {value!r:.60}")
        return float(value)
    if name in ("num_frames", "height", "width"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
            raise bad(f"must be a positive integer, got {value!r:.60}")
        return int(value)
    if name == "meta":
        if not isinstance(value, dict):
            raise bad(f"must be an object, got {value!r:.60}")
        return value
    raise bad("is not a manifest field")  # pragma: no cover - FIELDS is closed


def sample_from_dict(d: Any, where: str = "sample", root: Path | None = None) -> Sample:
    """Build a validated Sample from a parsed manifest record; errors name `where` and the field."""
    if not isinstance(d, dict):
        raise HumoError(f"{where}: expected a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise HumoError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} (free-form data goes in 'meta')")
    values = {}
    for name in FIELDS:
        if name not in d:
            if name in OPTIONAL:
                values[name] = type(OPTIONAL[name])() if OPTIONAL[name] is not None else None
                continue
            raise HumoError(f"{where}: missing field '{name}'")
        values[name] = _check(where, name, d[name])
    tracks, refs = len(values["person_audio"]), len(values["ref_images"])
    if tracks and tracks != refs:
        raise HumoError(
            f"{where}: field 'person_audio' has {tracks} tracks for {refs} reference images (one track per person, "
            "in the order of ref_images)"
        )
    return Sample(**values, root=root)


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing


def read_manifest(path: str | os.PathLike, *, check_files: bool = False) -> list[Sample]:
    """Read and validate a manifest (``.jsonl`` / ``.json`` lines, or ``.parquet``).

    Raises HumoError naming the line (or row) and field of the first problem: invalid JSON, a missing or
    ill-typed field, an unknown field, a duplicate id, or (with `check_files`) a missing video, reference image,
    audio, face-mask or pose file. Blank lines are skipped. Each sample's `root` is the manifest's folder.
    """
    p = require_file(path, "manifest")
    root = p.resolve().parent
    if p.suffix == ".parquet":
        records = [(f"row {i + 1}", r) for i, r in enumerate(_read_parquet(p))]
    else:
        records = []
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append((f"line {n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise HumoError(f"manifest {p} line {n}: invalid JSON ({e.msg} at column {e.colno})") from None
    samples, seen = [], {}
    for label, rec in records:
        where = f"manifest {p} {label}"
        s = sample_from_dict(rec, where, root)
        if s.id in seen:
            raise HumoError(f"{where}: duplicate id {s.id!r} (first on {seen[s.id]})")
        seen[s.id] = label
        if check_files:
            _check_files(where, s)
        samples.append(s)
    return samples


def _check_files(where: str, s: Sample) -> None:
    files = [(name, s.resolve(getattr(s, name))) for name in FILE_FIELDS]
    files += [(name, s.resolve(q)) for name in FILE_LIST_FIELDS for q in getattr(s, name)]
    for name, fp in files:
        if fp is not None and not fp.is_file():
            raise HumoError(f"{where}: field '{name}' file {fp} not found")


def write_manifest(path: str | os.PathLike, samples: list[Sample]) -> Path:
    """Write samples atomically as JSONL (or Parquet when `path` ends in ``.parquet``); returns the path.
    Every sample is validated first, so a bad one leaves no file."""
    p = Path(path)
    ids: set[str] = set()
    for i, s in enumerate(samples):
        sample_from_dict(s.to_dict(), f"sample {i} ({s.id!r})")
        if s.id in ids:
            raise HumoError(f"sample {i}: duplicate id {s.id!r}")
        ids.add(s.id)
    if p.suffix == ".parquet":
        _write_parquet(p, samples)
        return p
    with atomic_path(p) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for s in samples:
                f.write(json.dumps(s.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
    return p


def merge_manifests(paths: list[str | os.PathLike], out: str | os.PathLike) -> list[Sample]:
    """Write one manifest at `out` holding every sample of `paths`, in order, each path rewritten relative to the
    new manifest's folder (so it names the same files; absolute paths stay absolute). Nothing is written unless
    every input is valid; an id in two inputs is an error naming both, and so is `out` being one of the inputs
    (they are never modified). Returns the merged samples."""
    if not paths:
        raise HumoError("merge: no manifests given")
    if any(Path(p).resolve() == Path(out).resolve() for p in paths):
        raise HumoError(f"--out {out}: is one of the inputs (inputs are never modified)")
    dest = Path(out).resolve().parent

    def rebase(s: Sample, q: str | None) -> str | None:
        return q if q is None or Path(q).is_absolute() else os.path.relpath(s.resolve(q), dest)

    merged: list[Sample] = []
    first: dict[str, Path] = {}
    for path in paths:
        for s in read_manifest(path):
            if s.id in first:
                raise HumoError(f"manifest {path}: id {s.id!r} is also in {first[s.id]}")
            first[s.id] = Path(path)
            rebased = {name: rebase(s, getattr(s, name)) for name in FILE_FIELDS}
            rebased |= {name: [rebase(s, q) for q in getattr(s, name)] for name in FILE_LIST_FIELDS}
            merged.append(replace(s, **rebased, root=dest))
    write_manifest(out, merged)
    return merged


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise HumoError("Parquet manifests need pyarrow (pip install pyarrow); use .jsonl otherwise") from None
    return pyarrow


def _read_parquet(p: Path) -> list[dict]:
    pa = _pyarrow()
    rows = pa.parquet.read_table(p).to_pylist()
    for r in rows:
        if isinstance(r.get("meta"), str):  # meta is stored as a JSON string (free-form, no fixed schema)
            r["meta"] = json.loads(r["meta"])
    return rows


def _write_parquet(p: Path, samples: list[Sample]) -> None:
    pa = _pyarrow()
    rows = [{**s.to_dict(), "meta": json.dumps(s.meta, separators=(",", ":"))} for s in samples]
    table = pa.Table.from_pylist(rows)
    with atomic_path(p) as tmp:
        pa.parquet.write_table(table, tmp)

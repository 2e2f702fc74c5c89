"""manifest: the kept segments as ``OUT/manifest.jsonl`` (docs/data-format.md), for `humo precompute`/`train`.

Per segment (``record["sample"]``, checked by `humo.data.manifest.sample_from_dict`): ``id``, ``video`` and
``audio`` (paths relative to OUT, where the manifest is), ``caption`` (the captions stage's text, ``""``
when it did not run),
``split`` (``train``, or ``val`` for a `val_share` of the input videos, chosen by a hash of the video's id so
that all segments of one video land in the same split and the choice is the same on every run), ``fps`` 25,
``num_frames``, ``height``, ``width``, ``ref_images`` (the references stage's crop, relative to OUT),
``face_masks`` (the faces stage's ``.npz``, relative to OUT; null when that stage did not run), and ``meta``:
``source`` (the input file), ``clip`` (its id), and the facts of the stages before (``probe``, ``normalise``,
``segment``, ``speech``, ``faces``, ``sync``, ``reference``, ``captions``; ``audio_dropped`` for a segment kept
without its audio, `core.without_audio`).

``finish`` writes the manifest atomically from every kept record in input order (a rerun rewrites it whole);
with no segment kept it writes none and removes a stale one.
"""

from __future__ import annotations

import hashlib

from humo.constants import VIDEO_FPS
from humo.data.manifest import sample_from_dict, write_manifest
from humo.data.pipeline.core import Drop, Record, Settings
from humo.errors import HumoError

VERSION = 6
PARAMS = ("val_share",)
REQUIRES: tuple[str, ...] = ()
REASONS = {"invalid": "the record does not make a valid manifest sample (a bug upstream)"}
FACTS = (
    "probe",
    "normalise",
    "segment",
    "speech",
    "faces",
    "sync",
    "reference",
    "captions",
    "audio_dropped",
)  # the stage facts a sample's meta keeps
MANIFEST = "manifest.jsonl"


def split_of(clip: str, val_share: float) -> str:
    """``val`` for a stable `val_share` of clip ids, else ``train``."""
    u = int(hashlib.sha1(clip.encode()).hexdigest()[:8], 16) / 2**32
    return "val" if u < val_share else "train"


def process(record: Record, settings: Settings) -> Record:
    sample = {
        "id": record["id"],
        "video": record["video"],
        "caption": record.get("caption", ""),
        "audio": record.get("audio"),
        "ref_images": list(record.get("ref_images") or []),
        "face_masks": record.get("face_masks"),
        "split": split_of(record["clip"], settings.val_share),
        "fps": float(record.get("fps", VIDEO_FPS)),
        "num_frames": record["num_frames"],
        "height": record["height"],
        "width": record["width"],
        "meta": {"source": record["source"], "clip": record["clip"], **{k: record[k] for k in FACTS if k in record}},
    }
    try:
        sample_from_dict(sample, f"record {record['id']}")
    except HumoError as e:
        raise Drop("invalid", str(e)) from None
    record["sample"] = sample
    return record


def finish(records: list[Record], settings: Settings) -> str:
    path = settings.out / MANIFEST
    if not records:
        if path.exists():
            path.unlink()
        return f"no segment kept: no {MANIFEST} written"
    samples = [sample_from_dict(r["sample"], f"record {r['id']}") for r in records]
    write_manifest(path, samples)
    seconds = sum(s.num_frames for s in samples) / VIDEO_FPS
    splits = {}
    for s in samples:
        splits[s.split] = splits.get(s.split, 0) + 1
    per_split = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
    silent = sum(1 for s in samples if s.audio is None)
    without = f"; {silent} without audio (text and reference only)" if silent else ""
    return f"wrote {path}: {len(samples)} samples ({per_split}), {seconds:.1f} s of video{without}"

"""HuMoSet (HuMo's released training data) into our manifest: `humo data import-humoset ROOT --out OUT`.

The layout, as the HuMo repository's README states it (github.com/Phantom-video/HuMo, "HuMoSet Dataset", commit
17094e9, Dec 2025; the data itself is on ModelScope, ``leoniuschen/HuMoSet``, about 670K samples):

    ROOT/video/                   the target videos (with their sound: "strict audio-visual synchronization")
    ROOT/reference_image/         the reference image for each video: the same person, other clothes, background,
                                  hairstyle
    ROOT/video_caption.parquet    the dense captions (Qwen2.5-VL) of all videos

The README does not name the Parquet's columns nor say how a reference image is named after its video, and the
files could not be read from here (no network but PyPI). So the importer finds them by name, and every guess can
be overridden:

- the video column: the first of `VIDEO_COLUMNS` present (``--video-column``); a value is a path relative to ROOT
  (``video/x.mp4``), relative to ``video/`` (``x.mp4``, ``sub/x.mp4``), absolute, or a name without extension
  looked up in ``video/`` with any video extension;
- the caption column: the first of `CAPTION_COLUMNS` (``--caption-column``);
- the reference: a column of `REFERENCE_COLUMNS` when one exists (``--reference-column``; its value resolved as a
  video's, under ``reference_image/``), else by the video's name: ``reference_image/<same path>.<png|jpg|jpeg|webp>``,
  or every image inside a folder ``reference_image/<same path>/``.

Each row becomes a sample: ``video`` (absolute path), ``audio`` (the video itself, when it has a sound track;
`humo.media.audio.load_audio` reads a video's sound), ``ref_images``, ``caption``, ``fps``, ``num_frames``,
``width``, ``height`` (read from the video's header with PyAV), ``split`` (``val`` for a stable `val_share` of
ids), ``meta`` (``{"source": "humoset", "row": n, ...the row's other columns}``). A row whose video is missing or
unreadable, or which has no reference image, is skipped and listed in ``OUT/skipped.jsonl`` with its reason; a
tree that is not HuMoSet's layout is a one-line error before any work.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from humo.data.pipeline.inputs import VIDEO_EXTENSIONS, _assign_ids
from humo.errors import HumoError, atomic_path, first_line

METADATA = "video_caption.parquet"
VIDEOS = "video"
REFERENCES = "reference_image"
VIDEO_COLUMNS = ("video", "video_path", "video_name", "video_id", "vid", "path", "file_name", "filename", "name")
VIDEO_COLUMNS += ("id", "key")
CAPTION_COLUMNS = ("caption", "video_caption", "dense_caption", "captions", "description", "text", "prompt")
REFERENCE_COLUMNS = ("reference_image", "ref_image", "reference", "ref", "image", "image_path", "ref_path")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
SKIPPED = "skipped.jsonl"
REASONS = {
    "missing-video": "the row's video is not in video/",
    "unreadable": "the video does not open, or has no video stream or frame rate",
    "no-reference": "no reference image for the video in reference_image/",
    "bad-row": "the row's video value is empty or not text",
}


def read_metadata(path: Path) -> list[dict]:
    """The Parquet's rows as dicts (one-line HumoError when it does not read)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HumoError("import-humoset needs pyarrow to read the Parquet: pip install -e '.[data]'") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow's ArrowInvalid, OSError
        raise HumoError(f"{path}: not a readable Parquet file ({first_line(e)})") from None


def pick_column(columns: list[str], given: str | None, candidates: tuple[str, ...], path: Path) -> str | None:
    """`given` (checked), else the first of `candidates` among `columns` (any case), else None."""
    if given is not None:
        if given not in columns:
            raise HumoError(f"{path}: no column {given!r} (columns: {', '.join(columns)})")
        return given
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)


def _resolve(root: Path, folder: str, value, extensions) -> Path | None:
    """A row's path value as a file: absolute, else relative to ROOT or to ROOT/folder (never to the current folder,
    where a stray file of the same name would shadow the dataset's), or a name there without extension."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = Path(value.strip())
    for p in (root / v, root / folder / v) if not v.is_absolute() else (v,):
        if p.is_file():
            return p.absolute()
    for ext in extensions:
        for base in (root / folder / v, root / v):
            for p in (base.with_name(base.name + ext), base.with_name(base.name + ext.upper())):
                if p.is_file():
                    return p.absolute()
    return None


def find_references(root: Path, video: Path) -> list[Path]:
    """The reference images named after `video` (its path inside video/, without extension)."""
    try:
        rel = video.relative_to((root / VIDEOS).absolute()).with_suffix("")
    except ValueError:
        rel = Path(video.stem)
    base = root / REFERENCES / rel
    if base.is_dir():
        return sorted(p.absolute() for p in base.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    for ext in IMAGE_EXTENSIONS:
        for p in (base.with_name(base.name + ext), base.with_name(base.name + ext.upper())):
            if p.is_file():
                return [p.absolute()]
    return []


def probe_video(path: str) -> dict | str:
    """``{fps, num_frames, width, height, audio}`` from the video's header, or the reason it is unreadable."""
    import av

    try:
        with av.open(path, metadata_errors="replace") as c:
            if not c.streams.video:
                return "no video stream"
            v = c.streams.video[0]
            rate = v.average_rate or v.guessed_rate
            if not rate:
                return "no frame rate"
            frames = v.frames
            if not frames:
                duration = (
                    float(v.duration * v.time_base) if v.duration else (c.duration or 0) / av.time_base
                )  # the stream's, else the container's
                frames = int(round(duration * float(rate)))
            if frames <= 0 or not v.codec_context.width:
                return "no frames"
            return {
                "fps": round(float(rate), 6),
                "num_frames": int(frames),
                "width": int(v.codec_context.width),
                "height": int(v.codec_context.height),
                "audio": bool(c.streams.audio),
            }
    except Exception as e:  # noqa: BLE001 - FFmpeg's errors
        return first_line(e)


def import_humoset(
    root: Path,
    out: Path,
    video_column: str | None = None,
    caption_column: str | None = None,
    reference_column: str | None = None,
    val_share: float = 0.0,
    keep_without_reference: bool = False,
    workers: int = 1,
) -> str:
    """Write OUT/manifest.jsonl (and OUT/skipped.jsonl) from the HuMoSet tree at `root`; returns a summary line."""
    from humo.data.manifest import sample_from_dict, write_manifest
    from humo.data.pipeline.stages.manifest import split_of

    root = Path(root)
    if not root.is_dir():
        raise HumoError(f"{root}: not a folder (HuMoSet's root holds {VIDEOS}/, {REFERENCES}/ and {METADATA})")
    if not (root / VIDEOS).is_dir():
        raise HumoError(f"{root}: no {VIDEOS}/ folder (HuMoSet's layout: {VIDEOS}/, {REFERENCES}/, {METADATA})")
    if not (root / METADATA).is_file():
        raise HumoError(f"{root}: no {METADATA} (HuMoSet's captions; layout: {VIDEOS}/, {REFERENCES}/, {METADATA})")
    if not (root / REFERENCES).is_dir() and reference_column is None and not keep_without_reference:
        raise HumoError(
            f"{root}: no {REFERENCES}/ folder (HuMoSet's reference images; --no-reference keep imports without)"
        )
    if out.exists() and not out.is_dir():
        raise HumoError(f"--out {out}: exists and is not a folder")
    rows = read_metadata(root / METADATA)
    if not rows:
        raise HumoError(f"{root / METADATA}: no rows")
    columns = list(rows[0])
    meta_path = root / METADATA
    vcol = pick_column(columns, video_column, VIDEO_COLUMNS, meta_path)
    if vcol is None:
        raise HumoError(f"{meta_path}: no video column (columns: {', '.join(columns)}); name it with --video-column")
    ccol = pick_column(columns, caption_column, CAPTION_COLUMNS, meta_path)
    if ccol is None:
        raise HumoError(
            f"{meta_path}: no caption column (columns: {', '.join(columns)}); name it with --caption-column"
        )
    rcol = pick_column(columns, reference_column, REFERENCE_COLUMNS, meta_path)

    found, skipped = [], []
    for n, row in enumerate(rows):
        value = row.get(vcol)
        if not isinstance(value, str) or not value.strip():
            skipped.append({"row": n, "video": value, "reason": "bad-row", "detail": f"{vcol} is {value!r}"})
            continue
        video = _resolve(root, VIDEOS, value, sorted(VIDEO_EXTENSIONS))
        if video is None:
            skipped.append({"row": n, "video": value, "reason": "missing-video", "detail": f"{value} not found"})
            continue
        if rcol is not None:
            refs = row.get(rcol)
            refs = [refs] if isinstance(refs, str) else list(refs or [])
            refs = [r for r in (_resolve(root, REFERENCES, v, IMAGE_EXTENSIONS) for v in refs) if r is not None]
        else:
            refs = find_references(root, video)
        if not refs and not keep_without_reference:
            skipped.append({"row": n, "video": value, "reason": "no-reference", "detail": "no reference image found"})
            continue
        found.append((n, row, video, refs))

    paths = [str(v) for _, _, v, _ in found]
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            probes = list(pool.map(probe_video, paths, chunksize=64))
    else:
        probes = [probe_video(p) for p in paths]
    ids = _assign_ids([(v, _id_base(root, v)) for _, _, v, _ in found])
    samples = []
    for (n, row, video, refs), probe, sid in zip(found, probes, ids):
        if isinstance(probe, str):
            skipped.append({"row": n, "video": row.get(vcol), "reason": "unreadable", "detail": probe})
            continue
        caption = row.get(ccol)
        others = {k: v for k, v in row.items() if k not in (vcol, ccol, rcol) and _jsonable(v)}
        d = {
            "id": sid["id"],
            "video": str(video),
            "caption": caption.strip() if isinstance(caption, str) else "",
            "ref_images": [str(r) for r in refs],
            "audio": str(video) if probe["audio"] else None,
            "split": split_of(sid["id"], val_share),
            "fps": probe["fps"],
            "num_frames": probe["num_frames"],
            "height": probe["height"],
            "width": probe["width"],
            "meta": {"source": "humoset", "row": n, **others},
        }
        samples.append(sample_from_dict(d, f"{meta_path} row {n}"))
    if not samples:  # before --out is made: a failed import leaves nothing behind
        raise HumoError(f"{root}: no row could be imported ({_reasons(skipped)})")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "manifest.jsonl", samples)
    skipped.sort(key=lambda s: s["row"])
    with atomic_path(out / SKIPPED) as tmp:
        tmp.write_text("".join(json.dumps(s, default=str) + "\n" for s in skipped), encoding="utf-8")
    line = f"wrote {out / 'manifest.jsonl'}: {len(samples)} of {len(rows)} rows"
    if skipped:
        line += f"; skipped {len(skipped)} ({_reasons(skipped)}), listed in {out / SKIPPED}"
    columns_used = f"columns: video {vcol!r}, caption {ccol!r}, reference " + (repr(rcol) if rcol else "by name")
    return f"{line}\n{columns_used}"


def _id_base(root: Path, video: Path) -> str:
    """A sample's id: the video's path inside video/ without extension (as `humo data run` names its inputs)."""
    try:
        return str(video.relative_to(root.absolute() / VIDEOS).with_suffix(""))
    except ValueError:
        return video.stem


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _reasons(skipped: list[dict]) -> str:
    counts = Counter(s["reason"] for s in skipped)
    return ", ".join(f"{r} {n}" for r, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))) or "no rows"

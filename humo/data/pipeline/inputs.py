"""The input videos of a run: folders scanned by extension, list files, single files; one stable id each.

    find_inputs(["talks/", "more.txt", "one.mov"])
    -> [{"id": "alice_day1", "source": "/abs/talks/alice/day1.mp4"}, ...]

A folder is scanned recursively for files with a video extension (case-insensitive), in sorted order. A list file
(``.txt``) names one video per line, relative to the list's folder; blank lines and ``#`` comments are skipped, and
a listed file that is missing is still an input (the probe stage drops it as ``missing``: a stale line in a long list
should not stop a run). A file named on the command line is an input whatever its extension (the probe says
whether it is a video). The same file reached twice is one input.

Ids name files under OUT and the manifest's samples, so they are readable and stable: a folder's videos get their
path inside the folder without the extension (``alice/day1.mp4`` -> ``alice_day1``), other files their name
without the extension; characters other than letters, digits, ``-``, ``_`` and ``.`` become ``_``. Ids that would
collide get a short hash of the file's absolute path appended (``clip-3f2a9c``), so they stay the same on every run
with the same inputs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from humo.errors import HumoError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".3gp"}
)
MAX_ID = 80  # characters; longer names are cut and hashed


def find_inputs(items: list[str]) -> list[dict]:
    """The inputs named by `items` (folders, ``.txt`` lists, files), as ``[{"id", "source"}]`` in order.

    Raises a one-line HumoError before any work for an item that does not exist, an unreadable list, a folder
    without videos, or no input at all."""
    found: list[tuple[Path, str]] = []  # (absolute path, id base)
    for item in items:
        p = Path(item)
        if p.is_dir():
            videos = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not videos:
                exts = " ".join(sorted(VIDEO_EXTENSIONS))
                raise HumoError(f"--input {p}: no video files in this folder (looked for {exts})")
            found += [(f.absolute(), str(f.relative_to(p).with_suffix(""))) for f in videos]
        elif p.is_file() and p.suffix.lower() == ".txt":
            found += [(f, f.stem) for f in _read_list(p)]
        elif p.is_file():
            found.append((p.absolute(), p.stem))
        elif p.exists():
            raise HumoError(f"--input {p}: not a file or folder")
        else:
            raise HumoError(f"--input {p}: not found")
    unique: dict[Path, str] = {}
    for path, base in found:
        key = Path(_resolved(path))
        unique.setdefault(key, base)
    if not unique:
        raise HumoError("--input: no videos given")
    return _assign_ids(list(unique.items()))


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())


def _read_list(p: Path) -> list[Path]:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HumoError(f"--input {p}: cannot read the list ({e})") from None
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            f = Path(line).expanduser()
            paths.append(f if f.is_absolute() else (p.parent / f).absolute())
    if not paths:
        raise HumoError(f"--input {p}: the list names no video")
    return paths


def _clean(base: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", base.replace("\\", "/").replace("/", "_")).strip("_")
    s = s.lstrip(".") or "clip"  # a leading dot would make it a hidden (temporary-looking) file under OUT
    return s


def _short_hash(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:6]


def _assign_ids(items: list[tuple[Path, str]]) -> list[dict]:
    bases = []
    for path, base in items:
        b = _clean(base)
        if len(b) > MAX_ID:
            b = b[: MAX_ID - 7] + "-" + _short_hash(path)
        bases.append(b)
    counts: dict[str, int] = {}
    for b in bases:
        counts[b] = counts.get(b, 0) + 1
    ids = [b if counts[b] == 1 else f"{b}-{_short_hash(path)}" for b, (path, _) in zip(bases, items)]
    return [{"id": i, "source": str(path)} for i, (path, _) in zip(ids, items)]

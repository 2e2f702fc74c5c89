"""One error type for everything a user can get wrong.

The CLI prints a `HumoError` as a single line (``humo: error: <message>``) without a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class HumoError(Exception):
    """A user-facing error: bad input, a missing file, a key mismatch. The message is one line."""


def first_line(e: BaseException) -> str:
    """An exception's message for a one-line error: its first non-blank line, else the exception's type name."""
    s = str(e).strip()
    return s.splitlines()[0].strip() if s else type(e).__name__


def warn(message: str) -> None:
    """Tell the user, in one line on stderr, about something done to their input that they did not ask for."""
    print(f"humo: warning: {message}", file=sys.stderr, flush=True)


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a Path if it is a non-empty regular file, else raise a one-line HumoError."""
    p = Path(path)
    if not p.exists():
        raise HumoError(f"{what} {p}: file not found")
    if not p.is_file():
        raise HumoError(f"{what} {p}: not a file")
    if p.stat().st_size == 0:
        raise HumoError(f"{what} {p}: file is empty")
    return p


def read_json_file(path: str | os.PathLike, what: str) -> Any:
    """A JSON file's content; a missing or unreadable file is a one-line HumoError naming it as `what`."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HumoError(f"{what} {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise HumoError(f"{what} {path}: not a readable JSON file ({e})") from None


def usual_mode(base: int) -> int:
    """`base` (0o666 for files, 0o777 for folders) less the umask: the mode a plain open/mkdir would give, for
    outputs made through mkstemp/mkdtemp (which make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block completes.

    Nothing half-written is ever left at `final`: on any exception the temporary file is removed.
    `suffix` defaults to the final suffix so that writers that infer a format from the name still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix if suffix is not None else final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes it 0600; a finished output gets the usual mode (umask applied)
            os.chmod(tmp_path, usual_mode(0o666))
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def describe_keys(keys, limit: int = 12) -> str:
    """State-dict key names for an error message: sorted, the first `limit`, then how many more."""
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_keys(what: str, found: Mapping[str, Any], expected: Mapping[str, Any], *, may_miss=None) -> None:
    """The strict key check every loader shares: a one-line HumoError, starting with `what`, that lists the
    missing, unexpected and misshaped keys, and integer tensors where the model holds floats (a quantized file
    would fail deep inside ``load_state_dict``). Values are tensors or shapes (None where only the name is known);
    keys for which ``may_miss(key)`` is true may be absent."""

    def shape(v):
        return None if v is None else tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    common = sorted(set(found) & set(expected))
    missing = [k for k in expected if k not in found and not (may_miss and may_miss(k))]
    unexpected = [k for k in found if k not in expected]
    misshaped = [
        f"{k} {shape(found[k])} vs {shape(expected[k])}"
        for k in common
        if None not in (shape(found[k]), shape(expected[k])) and shape(found[k]) != shape(expected[k])
    ]
    integer = [
        f"{k} {found[k].dtype}"
        for k in common
        if hasattr(found[k], "is_floating_point") and hasattr(expected[k], "is_floating_point")
        and expected[k].is_floating_point() and not found[k].is_floating_point()
    ]  # fmt: skip
    problems = [
        f"{label}: {describe_keys(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", misshaped),
            ("not floating point", integer),
        )
        if keys
    ]
    if problems:
        raise HumoError(f"{what}: " + "; ".join(problems))


def check_output(path: str | os.PathLike, what: str, inputs=(), overwrite: bool = False, folder: bool = False) -> Path:
    """Refuse, before any work, an output path that would destroy an input, replace something unasked, or fail
    only when the result is written. `folder` = the output is a folder of files (e.g. PNG frames), not one file.

    Inputs are compared by resolved path (and by inode where both exist), so `./a.mp4`, a symlink or a hard link
    to an input are caught too."""
    p = Path(path)
    for i in inputs:
        i = Path(i)
        same = p.resolve() == i.resolve() or (p.exists() and i.exists() and os.path.samefile(p, i))
        if same:
            raise HumoError(f"{what} {p}: is also an input ({i}); writing it would destroy the input")
    if folder:
        if p.exists() and not p.is_dir():
            raise HumoError(f"{what} {p}: exists and is not a folder")
        if p.is_dir() and any(p.iterdir()) and not overwrite:
            raise HumoError(f"{what} {p}: folder is not empty (pass --overwrite to write into it)")
        for i in inputs:  # even with --overwrite: a frame file could land on an input kept in that folder
            if p.resolve() in Path(i).resolve().parents:
                raise HumoError(f"{what} {p}: holds an input ({i}); choose another folder")
    else:
        if p.is_dir():
            raise HumoError(f"{what} {p}: is a folder, not a file")
        if p.exists() and not overwrite:
            raise HumoError(f"{what} {p}: already exists (pass --overwrite to replace it)")
    # The nearest existing ancestor is where the output (and its temporary file) will be created: probe it, since
    # permission bits alone say nothing for root or on read-only mounts.
    parent = p.parent if not (folder and p.is_dir()) else p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HumoError(f"{what} {p}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".humo-probe.", dir=parent)
    except OSError as e:
        raise HumoError(f"{what} {p}: cannot write in {parent} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return p

"""One error type for everything a user can get wrong.

The CLI prints a `HumoError` as a single line (``humo: error: <message>``) without a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class HumoError(Exception):
    """A user-facing error: bad input, a missing file, a key mismatch. The message is one line."""


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
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def describe_keys(keys, limit: int = 12) -> str:
    """State-dict key names for an error message: sorted, the first `limit`, then how many more."""
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more

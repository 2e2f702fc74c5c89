"""`humo.errors.first_line`, the one helper every module uses to put an exception into a one-line error."""

from __future__ import annotations

from humo.errors import first_line


def test_first_line_is_the_first_non_blank_line_else_the_type():
    assert first_line(ValueError("\n  bad value  \nmore detail\n")) == "bad value"
    assert first_line(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"
    assert first_line(KeyError()) == "KeyError" and first_line(RuntimeError("   ")) == "RuntimeError"

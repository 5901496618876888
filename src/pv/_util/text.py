"""Values and file names as messages show them: bounded before they are formatted, and
with control characters escaped (a newline in a name must not forge a line of output)."""

from __future__ import annotations

import os
import reprlib
from typing import Any

#: Longest file name shown in a message, in characters.
MAX_SHOWN_PATH = 300

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3
_REPR.maxlong = 40


def short(value: Any, limit: int = 60) -> str:
    """``value`` (a string as itself, else a bounded repr) in at most ``limit`` printable characters."""
    if isinstance(value, str):
        text = value[: limit + 1]
        text = text if text.isprintable() else ascii(text)[1:-1]
    else:
        text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: control characters escaped, long names shortened."""
    text = os.fsdecode(path)
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return text if len(text) <= MAX_SHOWN_PATH else text[: MAX_SHOWN_PATH - 3] + "..."

"""JSON that a hostile file cannot abuse: bounded in size and depth, no NaN, no huge numbers, no repeated keys.

Evidence (gate reports, DSSE envelopes and the statements inside them) is read
through :func:`loads_strict`; a file through :func:`read_strict`, which refuses
anything but a regular file before it reads a byte.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pv._util.errors import InvalidValue, UserError
from pv._util.files import InputError, read_input

#: Largest evidence file read, in bytes, and deepest nesting of its JSON.
MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
#: Longest integer literal, in digits.
MAX_INT_DIGITS = 30


class StrictJsonError(UserError):
    """A file or text that is not acceptable JSON; the message names where."""


class DuplicateKeyError(InvalidValue):
    """A JSON object with a repeated key."""


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: a repeated key is an error, not "the last wins"."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKeyError(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits is out of range")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """The deepest nesting of the arrays and objects of JSON ``text`` (strings skipped)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def canonical_json(data: Any) -> bytes:
    """``data`` as canonical JSON bytes: sorted keys, compact separators, UTF-8, no NaN."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def loads_strict(text: str, shown: str, what: str = "JSON", first_line: int = 1) -> Any:
    """Parse ``text`` (from ``shown``, starting at line ``first_line``); StrictJsonError for over-deep
    nesting, NaN, infinities, integers of more than :data:`MAX_INT_DIGITS` digits, repeated keys or
    invalid JSON."""
    if len(text) > MAX_BYTES:
        raise StrictJsonError(f"{shown}: over the limit of {MAX_BYTES} bytes")
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise StrictJsonError(f"{shown}: not {what}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=reject_duplicate_keys, parse_float=_finite,
                          parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise StrictJsonError(f"{shown}:{err.lineno + first_line - 1}:{err.colno}: not JSON: {err.msg}") from None
    except DuplicateKeyError as err:
        raise StrictJsonError(f"{shown}: not valid {what}: {err}") from None
    except (ValueError, RecursionError) as err:
        raise StrictJsonError(f"{shown}: not {what}: {err}") from None


def read_text_strict(path: Path, shown: str, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_BYTES` bytes, read through pv's one
    opener (``pv._util.files.read_input``: a FIFO or device is refused before it can block);
    StrictJsonError otherwise."""
    try:
        data = read_input(path, MAX_BYTES)
    except InputError as err:
        reason = f"no such {what}" if err.missing else f"cannot read the {what}: {err.reason}"
        raise StrictJsonError(f"{shown}: {reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StrictJsonError(f"{shown}: cannot read the {what}: not UTF-8 ({err.reason} at byte {err.start})") from None


def read_strict(path: Path, shown: str, what: str = "JSON") -> Any:
    """:func:`loads_strict` of :func:`read_text_strict`."""
    return loads_strict(read_text_strict(path, shown, what), shown, what)

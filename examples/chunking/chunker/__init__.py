"""Split a sequence into consecutive chunks of at most ``size`` items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class ChunkError(ValueError):
    """A chunk size or length that cannot be used."""


def bounds(n: int, size: int) -> list[tuple[int, int]]:
    """The half-open ranges ``[start, stop)`` that cover ``range(n)`` in chunks of at most ``size``."""
    if size < 1:
        raise ChunkError(f"chunk size must be at least 1, got {size}")
    if n < 0:
        raise ChunkError(f"length must not be negative, got {n}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def split(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` as consecutive lists of at most ``size`` items, in order."""
    return [list(items[start:stop]) for start, stop in bounds(len(items), size)]

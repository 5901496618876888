"""The project's side of pv's falsifier protocol: its mutants, and how its code refuses input.

Each mutant is a planted defect of ``chunker``. ``pv vacuity`` (or ``pytest
--pv-vacuity``) runs every falsifier once per mutant it names, with the mutant
applied; the falsifier must fail there, or it checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import chunker
from pv.plugins.falsifiers import Mutant, MutantRegistry

#: ``replace`` also rebinds copies imported into the chunker package and the falsifier modules
MUTANTS = MutantRegistry(packages=["chunker"], falsifier_prefix="test_ft_")


@MUTANTS.mutant("last-chunk-dropped", "bounds leaves out a last, shorter chunk")
def _last_chunk_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[int, int], list[tuple[int, int]]]) -> Callable[[int, int], Any]:
        def bounds(n: int, size: int) -> list[tuple[int, int]]:
            found = original(n, size)
            return found[:-1] if found and found[-1][1] - found[-1][0] < size else found

        return bounds

    MUTANTS.replace(monkeypatch, "chunker:bounds", build)


@MUTANTS.mutant("overlapping-chunks", "each chunk after the first starts one item early")
def _overlapping(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[int, int], list[tuple[int, int]]]) -> Callable[[int, int], Any]:
        return lambda n, size: [(max(a - 1, 0), b) for a, b in original(n, size)]

    MUTANTS.replace(monkeypatch, "chunker:bounds", build)


@MUTANTS.mutant("size-check-removed", "a size below 1 is not refused")
def _size_check_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[int, int], list[tuple[int, int]]]) -> Callable[[int, int], Any]:
        return lambda n, size: [] if size < 1 else original(n, size)

    MUTANTS.replace(monkeypatch, "chunker:bounds", build)


def pytest_pv_mutants(config: pytest.Config) -> dict[str, Mutant]:
    """Every mutant above, by name."""
    return MUTANTS.mutants


def pytest_pv_kill_exceptions(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """chunker refuses bad input with ChunkError: raising it under a mutant is a kill."""
    return (chunker.ChunkError,)

"""Functions the fuzz contracts bind (allowed with ``--allow-module fuzz_targets``)."""

from __future__ import annotations

import time


def identity(x: int) -> int:
    """x."""
    return x


def slow(x: int) -> int:
    """x, after a twentieth of a second: a check over many inputs must stop at its budget."""
    time.sleep(0.05)
    return x

"""Small projects that pv mutate runs on in the tests: a module, its tests, a pytest.ini."""

from __future__ import annotations

from pathlib import Path

import pytest

CALC = '''\
def clamp(x, lo, hi):
    """x limited to [lo, hi]."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def count_up(n):
    i = 0
    while i < n:
        i += 1
    return i
'''

#: a weak suite: clamp is tested inside the range and below it only; count_up only for its result
WEAK_TESTS = '''\
from calc import clamp, count_up


def test_inside():
    assert clamp(5, 0, 10) == 5


def test_below():
    assert clamp(-3, 0, 10) == 0


def test_count():
    assert count_up(3) == 3
'''


def plant(root: Path, files: dict[str, str], patch: pytest.MonkeyPatch) -> Path:
    """Write ``files`` and an empty pytest.ini into ``root``; make it the working folder and importable."""
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "pytest.ini").write_text("[pytest]\n")
    patch.chdir(root)
    patch.setenv("PYTHONPATH", str(root))
    patch.syspath_prepend(str(root))
    return root

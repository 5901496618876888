"""A falsifier run in which every selected falsifier skipped must not exit 0."""

from __future__ import annotations

import subprocess
import sys

import torch

from shared_data import REPO_ROOT


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_a_gpu_only_selection_without_a_gpu_exits_5() -> None:
    run = _pytest("falsifiers/test_ft_backend.py", "-m", "gpu")
    expected = 0 if torch.cuda.is_available() else 5  # with a GPU the falsifier runs and passes
    assert run.returncode == expected, run.stdout[-2000:]
    if expected == 5:
        assert "nothing was falsified" in run.stdout


def test_a_selection_with_executed_falsifiers_exits_0() -> None:
    run = _pytest("falsifiers/test_ft_backend.py", "-m", "not gpu")
    assert run.returncode == 0, run.stdout[-2000:]
    assert " passed" in run.stdout

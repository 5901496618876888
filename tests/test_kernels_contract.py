"""The compiled checks of distill-kernels-v1 pass on the kernels and fail on planted kernel defects.

The defects are the kernel mutants of ``falsifiers/ft_mutants.py`` (edits of the kernels'
own source), so a check and a falsifier are shown to catch the same defects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pv.checks.compiling import compile_document, run_check
from pv.contracts.loading import load_document
from pv.checks.verdicts import Status

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNELS = REPO_ROOT / "contracts" / "distill-kernels-v1.yaml"
sys.path.insert(0, str(REPO_ROOT / "falsifiers"))
import ft_mutants  # noqa: E402


def _check(obligation: str):
    (compiled,) = [c for c in compile_document(load_document(KERNELS)) if c.obligation == obligation]
    return compiled


def test_every_obligation_has_a_check() -> None:
    compiled = compile_document(load_document(KERNELS))
    assert {c.obligation for c in compiled if c.checked} == {f"DKRN-EQ-00{i}" for i in range(1, 7)}


# Each refutation runs its examples through the interpreter and shrinks for at most 100 evaluations
# (a count: no time budget decides it): 0.4 to 9 s each on a 2-core CPU at load 6 (it was 97 s).
@pytest.mark.slow
@pytest.mark.parametrize("obligation, mutant", [
    ("DKRN-EQ-001", "kernel-kd-max-not-rescaled"),
    ("DKRN-EQ-002", "kernel-kd-backward-wrong-temperature"),
    ("DKRN-EQ-002", "kernel-kd-mask-ignored"),
    ("DKRN-EQ-003", "kernel-kd-max-not-rescaled"),
    ("DKRN-EQ-004", "kernel-q4k-nibble-order-swapped"),
    ("DKRN-EQ-004", "kernel-q4k-scale-high-bits-dropped"),
    ("DKRN-EQ-004", "kernel-bf16-truncated"),
    ("DKRN-EQ-005", "kernel-q6k-high-bits-dropped"),
    ("DKRN-EQ-006", "kernel-q5-0-fifth-bit-dropped"),
    ("DKRN-EQ-006", "kernel-q8-0-unsigned"),
])
def test_a_kernel_defect_is_refuted(obligation: str, mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ft_mutants.apply(mutant, monkeypatch)
    verdict = run_check(_check(obligation))
    assert verdict.status is Status.REFUTED, (mutant, verdict.status, verdict.detail)

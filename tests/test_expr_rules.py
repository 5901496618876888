"""PV-EXPR rules at validate time: injections and unsound check blocks are findings, and nothing runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from compiler_data.pvc_units import DATA_DIR

from pv.contracts.validate import validate_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
INJECTION = DATA_DIR / "pvc-injection-v1.yaml"


def expr_findings(*paths) -> list:
    return [f for f in validate_paths([str(p) for p in paths]).findings if f.rule.startswith("PV-EXPR")]


def obligation_lines(path: Path) -> dict[int, str]:
    """Line of each obligation's expect -> obligation id (the file puts expect last in each check)."""
    lines, current = {}, None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("- id: "):
            current = line.split()[-1]
        elif line.strip().startswith("expect:"):
            lines[number] = current
    return lines


def test_every_injection_attempt_is_a_finding_on_its_line_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    findings = expr_findings(INJECTION)
    by_obligation: dict[str, set[str]] = {}
    lines = obligation_lines(INJECTION)
    for finding in findings:
        by_obligation.setdefault(lines[finding.location.line], set()).add(finding.rule)
    assert by_obligation == {
        "PVC-INJ-001": {"PV-EXPR-003", "PV-EXPR-004"},  # __import__('os').system(...)
        "PVC-INJ-002": {"PV-EXPR-003", "PV-EXPR-004"},  # ().__class__.__base__.__subclasses__()
        "PVC-INJ-003": {"PV-EXPR-003"},  # x.real.__class__
        "PVC-INJ-004": {"PV-EXPR-002", "PV-EXPR-004"},  # (lambda: open(...))()
        "PVC-INJ-005": {"PV-EXPR-002"},  # walrus
        "PVC-INJ-006": {"PV-EXPR-004"},  # eval
        "PVC-INJ-007": {"PV-EXPR-003", "PV-EXPR-005"},  # effective_vocab.__globals__
    }
    assert all(f.severity.value == "error" for f in findings)
    assert not (tmp_path / "PV_INJECTION_MARKER").exists()


def test_sound_checks_have_no_expression_findings():
    contracts = sorted((REPO_ROOT / "contracts").glob("*.yaml"))
    sound = [DATA_DIR / name for name in ("pvc-checks-v1.yaml", "pvc-plugin-v1.yaml", "pvc-topk-false-v1.yaml")]
    assert expr_findings(*contracts, *sound) == []


CONTRACT = """\
metadata: {{version: 1.0.0, created: '2026-11-21', author: tests, description: one unsound check}}
equations:
  f: {{formula: f(x), domain: Z, codomain: Z, implementation: compiler_data.pvc_targets:effective_vocab}}
  g: {{formula: g(x), domain: Z, codomain: Z}}
proof_obligations:
- id: BAD-001
  type: invariant
  property: p
  formal: p
  check:
{check}
"""


@pytest.mark.parametrize(
    "check, message",
    [
        ("    given: {x: int}\n    call: h\n    result: h(x)\n    expect: result > 0", "not an equation of this contract"),
        ("    given: {x: int}\n    call: g\n    result: g(x)\n    expect: result > 0", "no valid 'implementation"),
        ("    given: {x: int}\n    call: f\n    raises: {error: ValueError}", "raises needs 'result'"),
        ("    given: {x: float}\n    engine: exhaustive\n    expect: x == x", "every input domain finite"),
        ("    given: {x: {tensor: {shape: [2]}}}\n    engine: crosshair\n    expect: True", "plain Python inputs only"),
        ("    given: {x: float}\n    expect: isclose(x, x)", "declares no tolerance"),
        ("    given: {x: {int: {min: 3, max: 1}}}\n    expect: x > 0", "min 3 is greater than max 1"),
        ("    given: {len: int}\n    expect: len > 0", "is a helper"),
        ("    given: {x: {tensor: {dtype: uint8, shape: [2], elements: {max: 256}}}}\n    expect: True",
         "uint8 elements must lie in [0, 255]"),
        ("    given: {x: int}\n    expect: x > 0\n    budget: {examples: 0}", "budget.examples"),
    ],
)
def test_unsound_check_blocks_are_pv_expr_006(tmp_path, check, message):
    path = tmp_path / "bad.yaml"
    path.write_text(CONTRACT.format(check=check))
    findings = validate_paths([str(path)]).findings
    ours = [f for f in findings if f.rule == "PV-EXPR-006"]
    assert any(message in f.message for f in ours), [f.format_text() for f in findings]
    assert all(f.location.path == str(path) and f.location.line >= 10 for f in ours)


def test_pv_validate_rejects_the_injections_and_nothing_runs(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "pv", "validate", str(INJECTION)], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert "PV-EXPR-004" in process.stdout and "__import__" in process.stdout
    assert "__subclasses__" in process.stdout and "Traceback" not in process.stderr
    assert not (tmp_path / "PV_INJECTION_MARKER").exists()

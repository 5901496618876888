"""`pv gate` and obligation verdicts: every obligation with an executable check must be proved or passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate_testing import GitProject, read_report

pytest_plugins = ["pytester"]

CONTRACT_AND_FALSIFIERS = ("contracts", "test_ft_syn.py")


def gate_cpu(project: GitProject, capsys: pytest.CaptureFixture[str], report: Path) -> tuple[int, str]:
    code, out, err = project.gate(capsys, report)
    assert code in (0, 1), err
    return code, out


def test_a_proved_obligation_passes_and_an_unchecked_one_is_named(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x"})
    report = project.cpu(paths=CONTRACT_AND_FALSIFIERS)
    entries = {e["obligation"]: e for e in read_report(report)["obligations"]}
    assert entries["OB-TRUE"]["status"] == "proved"
    code, out = gate_cpu(project, capsys, report)
    assert code == 0, out
    assert "note: 1 obligation(s) without an executable check or a falsifier deciding them: OB-INV-001" in out


def test_a_refuted_obligation_fails_the_gate_with_its_counterexample(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x", "OB-FALSE": "x * 2 == x"})
    code, out = gate_cpu(project, capsys, project.cpu(paths=CONTRACT_AND_FALSIFIERS))
    assert code == 1
    assert "- obligation OB-FALSE: refuted: exhaustive: " in out
    assert "x=1" in out
    assert "OB-TRUE" not in out.split("FAIL", 1)[1].split("note:")[0]


def test_a_checked_obligation_without_a_verdict_fails_the_gate(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x"})
    code, out = gate_cpu(project, capsys, project.cpu())  # the falsifiers only: contracts/ not run
    assert code == 1
    assert "- obligation OB-TRUE: not-run: no verdict in any report" in out


def test_not_confirmed_is_not_a_pass(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x"})
    report = project.cpu(paths=CONTRACT_AND_FALSIFIERS)

    def budget_spent(data: dict) -> None:
        for entry in data["obligations"]:
            for verdict in entry["verdicts"]:  # as an engine whose budget ran out would report it
                verdict.update(status="not-confirmed", detail="budget of 10 s spent without a counterexample")

    project.edit(report, budget_spent, reseal=True)
    code, out = gate_cpu(project, capsys, report)
    assert code == 1
    assert "- obligation OB-TRUE: not-confirmed: exhaustive: budget of 10 s spent" in out


def test_verdicts_merge_across_reports(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x"})
    with_checks = project.cpu(paths=CONTRACT_AND_FALSIFIERS)
    code, out, _ = project.gate(capsys, "--release", with_checks, project.gpu())
    assert code == 0, out


# --- obligations that falsifiers decide (falsification_tests[].obligation) ------------------


def test_an_obligation_a_falsifier_decides_passes_with_it(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, decides={"FT-A-001": "OB-INV-001"})
    report = project.cpu(paths=CONTRACT_AND_FALSIFIERS)
    entry = next(e for e in read_report(report)["obligations"] if e["obligation"] == "OB-INV-001")
    assert entry["status"] == "unchecked"  # the run has no check of it; the gate decides it by FT-A-001
    assert entry["verdicts"][0]["detail"] == ("the obligation has no executable check; "
                                              "falsifier(s) FT-A-001 decide it in pv gate")
    code, out = gate_cpu(project, capsys, report)
    assert code == 0, out
    assert (f"note: obligation OB-INV-001: passed: decided by falsifier FT-A-001: passed on cpu ({report}), "
            "1 mutant run(s) killed") in out
    assert "without an executable check" not in out
    code, out, _ = project.gate(capsys, "--format", "json", report)
    assert json.loads(out)["gates"][0]["obligations"] == {"OB-INV-001": "passed"}


def test_an_obligation_fails_with_the_falsifier_that_decides_it(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, decides={"FT-A-001": "OB-INV-001"})
    code, out = gate_cpu(project, capsys, project.cpu(SYN_BREAK_CPU="1"))
    assert code == 1
    assert "- obligation OB-INV-001: refuted: decided by falsifier FT-A-001: failed on cpu" in out
    assert "the truncation is off by one" in out


def test_an_obligation_is_not_passed_by_a_falsifier_without_mutants_or_evidence(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # FT-A-001 is not required by the gate, so only the obligation it decides can fail for it
    decides = {"FT-A-001": "OB-INV-001"}
    project = GitProject(pytester, monkeypatch, mutants=False, decides=decides, require={"FT-G-001": ["cpu"]})
    code, out = gate_cpu(project, capsys, project.cpu())
    assert code == 1
    assert ("- obligation OB-INV-001: not-run: decided by falsifier FT-A-001: passed on cpu "
            f"({project.root / 'reports' / 'cpu.json'}), but its mutants were not run") in out
    code, out = gate_cpu(project, capsys, project.cpu(SYN_SKIP="1"))
    assert code == 1
    assert "- obligation OB-INV-001: not-run: decided by falsifier FT-A-001: skipped on cpu" in out


def test_an_obligation_decided_on_another_profile_waits_for_the_release(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = GitProject(pytester, monkeypatch, decides={"FT-G-001": "OB-INV-001"})
    cpu = project.cpu()
    code, out = gate_cpu(project, capsys, cpu)
    assert code == 0, out
    assert ("note: obligation OB-INV-001: decided by falsifier FT-G-001, required on h100; "
            "deferred to the release gate") in out
    code, out, _ = project.gate(capsys, "--release", cpu, project.gpu())
    assert code == 0, out
    assert "note: obligation OB-INV-001: passed: decided by falsifier FT-G-001: passed on h100" in out
    code, out, _ = project.gate(capsys, "--release", cpu, project.gpu(SYN_BREAK_GPU="1"))
    assert code == 1
    line = next(line for line in out.splitlines() if "- obligation OB-INV-001: " in line)
    assert line.strip().startswith("- obligation OB-INV-001: refuted: decided by falsifier FT-G-001: ")
    assert "failed on h100 (" in line and "peak memory over the threshold" in line

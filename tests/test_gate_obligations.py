"""`pv gate` and obligation verdicts: every obligation with an executable check must be proved or passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate_testing import GitProject

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
    entries = {e["obligation"]: e for e in json.loads(report.read_text())["obligations"]}
    assert entries["OB-TRUE"]["status"] == "proved"
    code, out = gate_cpu(project, capsys, report)
    assert code == 0, out
    assert "note: 1 obligation(s) without an executable check: OB-INV-001" in out


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

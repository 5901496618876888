"""Incremental runs: a mutant's result is reused while its definition and its tests' files are unchanged;
--since REF mutates only the definitions changed since a commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mutation_projects import CALC, WEAK_TESTS, plant
from pv.mutation.incremental import cache_keys, stale_mutants
from pv.mutation.report import MutationReport
from pv.mutation.run import run_mutation

EDITED = CALC.replace("        i += 1\n", "        i = i + 1\n")


def _run(root: Path, **options: object) -> MutationReport:
    return run_mutation(["test_calc.py"], {"calc:clamp", "calc:count_up"}, root, workers=2, timeout_scale=1.0,
                        timeout_slack=1.0, **options)  # type: ignore[arg-type]


def test_an_unchanged_mutant_is_reused_and_an_edited_function_runs_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, monkeypatch)
    earlier = tmp_path / "earlier.json"
    first = _run(tmp_path, previous=earlier)
    assert first.to_json()["reused"] == 0
    earlier.write_text(json.dumps(first.to_json()))
    again = _run(tmp_path, previous=earlier)
    assert all(m.reused for m in again.mutants) and again.to_json()["reused"] == len(first.mutants)
    assert [(m.key, m.status, m.killed_by) for m in again.mutants] == [
        (m.key, m.status, m.killed_by) for m in first.mutants]
    assert stale_mutants(first.to_json(), tmp_path) == []
    (tmp_path / "calc.py").write_text(EDITED)
    # staleness per mutant: the report still holds for clamp, not for the edited count_up
    assert stale_mutants(first.to_json(), tmp_path) == [m.key for m in first.mutants if m.site.scope == "count_up"]
    edited = _run(tmp_path, previous=earlier)
    reused = {m.site.scope for m in edited.mutants if m.reused}
    assert reused == {"clamp"} and edited.to_json()["reused"] == sum(m.site.scope == "clamp" for m in first.mutants)
    assert all(m.status != "not-run" for m in edited.mutants)
    # a test file edited: every mutant its tests reach gets another key
    inputs = dict(edited.inputs)
    before = cache_keys(edited.mutants, inputs)
    inputs["test_calc.py"] = "0" * 64
    after = cache_keys(edited.mutants, inputs)
    assert {m.key for m in edited.mutants if before[m.key] == after[m.key]} == {
        m.key for m in edited.mutants if not m.tests}


def test_since_a_commit_only_the_changed_definitions_are_mutated(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, monkeypatch)
    for command in (["init", "-q"], ["add", "-A"],
                    ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "calc"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    (tmp_path / "calc.py").write_text(EDITED)
    report = _run(tmp_path, since_ref="HEAD")
    assert report.mutants and {m.site.scope for m in report.mutants} == {"count_up"}
    assert "i + 1 -> i - 1" in {m.site.change for m in report.mutants}

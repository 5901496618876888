"""`qa_gate.min_mutation_score`: mutation evidence (`pv mutate --format intoto`), and how `pv gate` judges it.

The mutation results are genuine: `pv mutate` runs once on a planted module with a weak suite (its
score is below 1), and the report written while that run was still going (a checkpoint) is the
incomplete one. A synthetic project under git holds the same module, tests and equivalents; each
piece of evidence is that report with the inputs pv mutate records in that project, signed by the
project's host key. One test runs `pv mutate --format intoto` in the project itself, end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate_testing import GitProject, read_statements
from mutation_projects import CALC, WEAK_TESTS, plant
from pv.attest.envelopes import MUTATION_REPORT, envelope, file_subjects, statement, write_bundle
from pv.attest.keys import HostKey
from pv.mutation.inputs import run_inputs
from pv.mutation.run import run_mutation

pytest_plugins = ["pytester"]

EQUIVALENTS = ("calc:clamp:compare:0:\n  change: x < lo -> x <= lo\n"
               "  reason: at x == lo both branches return lo\n")
EVIDENCE = "reports/mutate/calc.intoto.jsonl"


@pytest.fixture(scope="module")
def mutated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The reports of `pv mutate` on calc.clamp: ``full`` (the finished run) and ``partial`` (written
    after its first mutant)."""
    root = tmp_path_factory.mktemp("mutated")
    (root / "mutants").mkdir()
    (root / "mutants" / "equivalent.yaml").write_text(EQUIVALENTS)
    partial: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        plant(root, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, patch)
        report = run_mutation(
            ["test_calc.py"], {"calc:clamp"}, root, equivalents_path=root / "mutants" / "equivalent.yaml",
            workers=1, checkpoint=lambda r: partial.append(r.to_json()) if not partial else None,
            checkpoint_every_s=0.0)
    return {"full": report.to_json(), "partial": partial[0]}


def _recomputed(report: dict[str, Any]) -> float:
    """The standard score of a report's mutants, counted here from its list."""
    statuses = [m["status"] for m in report["mutants"]]
    detected = statuses.count("killed") + statuses.count("timeout")
    return detected / (detected + statuses.count("survived") + statuses.count("no-coverage"))


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    """The synthetic project with the mutated module, its tests and the equivalents, a contract that
    binds calc, and [tool.pv] mutation_report naming :data:`EVIDENCE`; all committed."""
    found = GitProject(pytester, monkeypatch)
    (found.root / "calc.py").write_text(CALC)
    (found.root / "test_calc.py").write_text(WEAK_TESTS)
    (found.root / "mutants").mkdir()
    (found.root / "mutants" / "equivalent.yaml").write_text(EQUIVALENTS)
    pyproject = found.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + f'mutation_report = "{EVIDENCE}"\n')
    contract = found.root / "contracts" / "syn-v1.yaml"
    data = yaml.safe_load(contract.read_text())
    data["equations"]["effective_vocab"]["implementation"] = "calc:clamp"
    contract.write_text(yaml.safe_dump(data, sort_keys=False))
    found.commit("the mutated module")
    return found


def require_score(project: GitProject, minimum: float) -> None:
    path = project.root / "contracts" / "syn-v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["qa_gate"]["min_mutation_score"] = minimum
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    project.commit(f"min_mutation_score {minimum}")


def evidence(project: GitProject, report: dict[str, Any], key: HostKey | None = None, *,
             source: dict[str, Any] | None = None) -> Path:
    """``report`` with the inputs pv mutate records in ``project``, as its signed evidence at :data:`EVIDENCE`."""
    rule, files = run_inputs(project.root, [project.root / "calc.py"], [project.root / "test_calc.py"],
                             Path("contracts"), Path("mutants/equivalent.yaml"))
    bound = {**report, "inputs": {"rule": rule.to_json(), "files": files, "outside": []},
             "git": source or {"commit": "0" * 40, "tree": "0" * 40, "dirty": False, "cleanroom": True}}
    path = project.root / EVIDENCE
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bundle(path, [envelope(statement(file_subjects(files), MUTATION_REPORT, bound),
                                        key or project.key)])


def test_the_weak_suite_scores_below_one_and_records_what_it_judged(mutated: dict[str, dict[str, Any]]) -> None:
    full = mutated["full"]
    assert 0 < _recomputed(full) < 1 and full["complete"] is True and full["survived"] >= 1
    judged = full["judged"]
    assert [entry["path"] for entry in judged["sources"]] == ["calc.py"]
    assert judged["sources"][0]["sha256"] == hashlib.sha256(CALC.encode()).hexdigest()
    assert judged["equivalents"] == {"path": "mutants/equivalent.yaml",
                                     "sha256": hashlib.sha256(EQUIVALENTS.encode()).hexdigest()}
    assert mutated["partial"]["complete"] is False


def test_a_score_at_or_above_the_minimum_passes_and_below_it_fails(
    project: GitProject, mutated: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    score = _recomputed(mutated["full"])
    for minimum in (round(score - 0.05, 2), score):
        require_score(project, minimum)
        evidence(project, mutated["full"])
        code, out, _ = project.gate(capsys, project.cpu())
        assert code == 0, out
        assert f"requirement: mutation score >= {minimum:g}: met, decided by {EVIDENCE}" in out
    minimum = round(score + 0.01, 2)
    require_score(project, minimum)
    evidence(project, {**mutated["full"], "score": 1.0})  # the report's own score field is never read
    code, out, _ = project.gate(capsys, project.cpu())
    assert code == 1
    assert f"score {round(score, 4):g} < {minimum:g} in {EVIDENCE}" in out


def test_no_mutation_evidence_fails_a_gate_that_asks_for_a_score_only(
    project: GitProject, mutated: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = project.gate(capsys, project.cpu(name="none"))
    assert code == 0, out  # a gate that asks for no score does not care
    require_score(project, 0.5)
    report = project.cpu()
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert f"- min_mutation_score 0.5: no mutation evidence ({EVIDENCE}: no such evidence file" in out, out
    (project.root / EVIDENCE).parent.mkdir(parents=True)
    (project.root / EVIDENCE).write_text(json.dumps(mutated["full"]))  # as pv mutate --format json wrote it
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert f"no mutation evidence ({EVIDENCE}:1: not a DSSE envelope" in out


def test_a_test_or_source_changed_after_the_mutation_run_makes_it_stale(
    project: GitProject, mutated: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    require_score(project, 0.5)
    evidence(project, mutated["full"])
    code, out, _ = project.gate(capsys, project.cpu(name="fresh"))
    assert code == 0, out
    for path, change in (("test_calc.py", "\n\ndef test_more():\n    pass\n"), ("calc.py", "\n\nLIMIT = 3\n"),
                         ("mutants/equivalent.yaml", "# reviewed again\n"),
                         ("contracts/syn-v1.yaml", "# a narrower domain\n")):
        before = (project.root / path).read_text()
        (project.root / path).write_text(before + change)
        code, out, err = project.gate(capsys, project.cpu(name="stale"))
        assert code == 1, out + err
        assert f"- min_mutation_score 0.5: mutation evidence {EVIDENCE} is stale: {path} differs" in out
        (project.root / path).write_text(before)


def test_a_report_of_an_unfinished_run_fails(
    project: GitProject, mutated: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    require_score(project, 0.01)
    evidence(project, mutated["partial"])
    code, out, _ = project.gate(capsys, project.cpu())
    assert code == 1
    assert f"- min_mutation_score 0.01: mutation evidence {EVIDENCE} is incomplete: " in out


def test_the_release_needs_it_signed_by_a_trusted_key_from_a_clean_room(
    project: GitProject, mutated: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from pv.attest.keys import generate_key

    score = _recomputed(mutated["full"])
    require_score(project, score)
    cpu, gpu = project.cpu(), project.gpu()
    evidence(project, mutated["full"])
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 0, out
    evidence(project, mutated["full"], generate_key(tmp_path / "elsewhere"))
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 1 and "a release needs it signed by a trusted key" in out
    evidence(project, mutated["full"], source={"commit": None, "tree": None, "dirty": None, "cleanroom": False})
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 1 and "was not made in a clean room of a clean tree" in out


@pytest.mark.slow
def test_pv_mutate_writes_signed_evidence_from_a_clean_room_that_the_release_accepts(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    require_score(project, 0.5)
    run = subprocess.run([sys.executable, "-m", "pv", "mutate", "test_calc.py", "--format", "intoto", "-o", EVIDENCE,
                          "-j", "1"], cwd=project.root, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PV_KEY_DIR": str(project.key_dir)})
    assert run.returncode in (0, 1), run.stdout + run.stderr
    [found] = read_statements(project.root / EVIDENCE)
    assert found["predicateType"] == MUTATION_REPORT
    report = found["predicate"]
    assert report["git"]["cleanroom"] is True and report["git"]["dirty"] is False
    assert {"calc.py", "test_calc.py", "conftest.py", "mutants/equivalent.yaml"} <= set(report["inputs"]["files"])
    code, out, _ = project.gate(capsys, "--release", project.cpu(), project.gpu())
    assert code == 0, out
    assert f"requirement: mutation score >= 0.5: met, decided by {EVIDENCE}" in out

"""`qa_gate.min_mutation_score`: the mutation evidence a gate report embeds, and how `pv gate` judges it.

The mutation reports are genuine: `pv mutate` runs once on a planted module with a weak suite (its
score is below 1), and the report written while that run was still going (a checkpoint) is the
incomplete one. Each gate report is made by the report plugin in a synthetic project that holds a
copy of the mutated module, with the mutation report named by ``$PV_MUTATION_REPORT`` or
``[tool.pv] mutation_report``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate_testing import REQUIRE, GitProject, contract_text, falsifier_source, write_project
from mutation_projects import CALC, WEAK_TESTS, plant
from pv.cli import main
from pv.mutation.run import run_mutation
from pv.evidence.integrity import add_checksum

pytest_plugins = ["pytester"]

EQUIVALENTS = ("calc:clamp:compare:0:\n  change: x < lo -> x <= lo\n"
               "  reason: at x == lo both branches return lo\n")


@pytest.fixture(scope="module")
def mutated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where `pv mutate` ran on calc.clamp: calc.py, the equivalents, and its reports
    ``full.json`` (the finished run) and ``partial.json`` (written after its first mutant)."""
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
        (root / "full.json").write_text(json.dumps(report.to_json(), indent=1))
    (root / "partial.json").write_text(json.dumps(partial[0], indent=1))
    return root


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mutated: Path) -> GitProject:
    """The synthetic project with the mutated module and the equivalents, both committed."""
    found = GitProject(pytester, monkeypatch)
    shutil.copy(mutated / "calc.py", found.root / "calc.py")
    shutil.copytree(mutated / "mutants", found.root / "mutants")
    found.commit("the mutated module")
    return found


def score_of(mutated: Path) -> float:
    return json.loads((mutated / "full.json").read_text())["score"]


def require_score(project: GitProject, minimum: float | None) -> None:
    """Set (or, with None, leave out) ``qa_gate.min_mutation_score`` of the project's contract."""
    path = project.root / "contracts" / "syn-v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["qa_gate"].pop("min_mutation_score", None)
    if minimum is not None:
        data["qa_gate"]["min_mutation_score"] = minimum
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    project.commit(f"min_mutation_score {minimum}")


def cpu_report(project: GitProject, mutated: Path, which: str | None = "full.json", name: str = "cpu") -> Path:
    """A cpu gate report with the mutation report ``which`` of ``mutated`` (None: none configured)."""
    if which is None:
        return project.cpu(name=name)
    copy = project.root / "reports" / "mutate" / which
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(mutated / which, copy)
    return project.cpu(name=name, PV_MUTATION_REPORT=str(copy))


def test_the_weak_suite_scores_below_one_and_records_what_it_judged(mutated: Path) -> None:
    data = json.loads((mutated / "full.json").read_text())
    assert 0 < data["score"] < 1 and data["complete"] is True and data["survived"] >= 1
    judged = data["judged"]
    assert [entry["path"] for entry in judged["sources"]] == ["calc.py"]
    assert judged["sources"][0]["sha256"] == hashlib.sha256(CALC.encode()).hexdigest()
    assert judged["equivalents"] == {"path": "mutants/equivalent.yaml",
                                     "sha256": hashlib.sha256(EQUIVALENTS.encode()).hexdigest()}
    assert json.loads((mutated / "partial.json").read_text())["complete"] is False


def test_a_score_at_or_above_the_minimum_passes(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    score = score_of(mutated)
    for minimum, name in ((score, "at"), (round(score - 0.05, 2), "above")):
        require_score(project, minimum)
        report = cpu_report(project, mutated, name=name)
        section = json.loads(report.read_text())["mutation"]
        assert section["status"] == "present" and section["score"] == score and section["stale"] is False
        code, out, _ = project.gate(capsys, report)
        assert code == 0, out
        assert f"requirement: mutation score >= {minimum:g}: met, decided by {report}" in out


def test_a_score_below_the_minimum_fails(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    score = score_of(mutated)
    minimum = round(score + 0.01, 2)
    require_score(project, minimum)
    report = cpu_report(project, mutated)
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert f"score {round(score, 4):g} < {minimum:g} in reports/mutate/full.json" in out
    assert f"requirement: mutation score >= {minimum:g}: unmet, decided by {report}" in out


def test_no_mutation_evidence_fails_a_gate_that_asks_for_a_score_only(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cpu_report(project, mutated, None, name="none")
    assert json.loads(report.read_text())["mutation"]["status"] == "absent"
    code, out, _ = project.gate(capsys, report)
    assert code == 0, out  # a gate that asks for no score does not care
    require_score(project, 0.5)
    report = cpu_report(project, mutated, None, name="none")
    missing = project.cpu(name="missing", PV_MUTATION_REPORT=str(project.root / "reports" / "no-such.json"))
    earlier = {k: v for k, v in json.loads((mutated / "full.json").read_text()).items() if k != "judged"}
    (project.root / "reports" / "earlier.json").write_text(json.dumps(earlier))  # as an earlier pv mutate wrote
    unjudged = project.cpu(name="unjudged", PV_MUTATION_REPORT=str(project.root / "reports" / "earlier.json"))
    for made, why in ((report, "no mutation report configured"),
                      (missing, "reports/no-such.json: no such file"),
                      (unjudged, "reports/earlier.json: it records no files it judged")):
        code, out, _ = project.gate(capsys, made)
        assert code == 1
        assert f"- min_mutation_score 0.5: no mutation evidence ({why}" in out
        assert f"requirement: mutation score >= 0.5: unmet, decided by {made}" in out


def test_a_source_changed_after_the_mutation_run_is_stale(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_score(project, 0.5)
    # named by [tool.pv] mutation_report this time
    (project.root / "pyproject.toml").write_text(
        (project.root / "pyproject.toml").read_text() + 'mutation_report = "reports/mutate/full.json"\n')
    (project.root / "reports" / "mutate").mkdir(parents=True)
    shutil.copy(mutated / "full.json", project.root / "reports" / "mutate" / "full.json")
    code, out, _ = project.gate(capsys, project.cpu(name="fresh"))
    assert code == 0, out
    with (project.root / "calc.py").open("a") as handle:
        handle.write("\n\nLIMIT = 3\n")
    report = project.cpu(name="stale")
    section = json.loads(report.read_text())["mutation"]
    assert section["stale"] is True and section["changed"] == ["calc.py"]
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert "- min_mutation_score 0.5: mutation report is stale: calc.py changed since it was made" in out
    (project.root / "calc.py").write_text(CALC)
    (project.root / "mutants" / "equivalent.yaml").write_text(EQUIVALENTS + "# reviewed again\n")
    code, out, _ = project.gate(capsys, project.cpu(name="stale-equivalents"))
    assert code == 1
    assert "mutation report is stale: mutants/equivalent.yaml changed" in out


def test_a_report_of_an_unfinished_run_fails(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_score(project, 0.01)
    report = cpu_report(project, mutated, "partial.json")
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert ("- min_mutation_score 0.01: mutation report reports/mutate/partial.json is incomplete: "
            "written while pv mutate was still running") in out


def test_the_release_takes_the_score_from_signed_reports_and_the_signature_covers_it(
    project: GitProject, mutated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    score = score_of(mutated)
    require_score(project, score)
    cpu, gpu = cpu_report(project, mutated), project.gpu()
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 0, out
    assert f"requirement: mutation score >= {score:g}: met, decided by {cpu}" in out

    def raise_score(data: dict) -> None:
        data["mutation"]["score"] = 1.0

    edited = project.edit(cpu, raise_score)
    code, _, err = project.gate(capsys, "--release", edited, gpu)
    assert code == 2 and "checksum mismatch" in err
    edited = project.root / "reports" / "resealed.json"
    data = json.loads(cpu.read_text())
    raise_score(data)
    edited.write_text(json.dumps(add_checksum(data)))  # a checksum anyone can recompute; the signature stays
    code, _, err = project.gate(capsys, "--release", edited, gpu)
    assert code == 2 and "signature" in err and "Refusing it" in err


@pytest.mark.slow
def test_pv_verify_embeds_the_mutation_report_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutated: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PV_ROOT", "PV_PROFILES", "PV_MUTATION_REPORT"):
        monkeypatch.delenv(name, raising=False)
    contract = yaml.safe_load(contract_text(list(REQUIRE), REQUIRE))
    score = score_of(mutated)
    contract["qa_gate"]["min_mutation_score"] = score
    write_project(tmp_path, {"syn-v1": yaml.safe_dump(contract, sort_keys=False)}, {})
    (tmp_path / "falsifiers").mkdir()
    write_project(tmp_path / "falsifiers", {}, {"test_ft_syn.py": falsifier_source("FT-A-001", mutants=False)})
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    shutil.copy(mutated / "calc.py", tmp_path / "calc.py")
    shutil.copytree(mutated / "mutants", tmp_path / "mutants")
    shutil.copy(mutated / "full.json", tmp_path / "mutation.json")
    code = main(["verify", "--out", str(tmp_path / "out"), "--profile", str(tmp_path / "profiles" / "cpu.yaml"),
                 "--mutation-report", "mutation.json"])
    out, _ = capfd.readouterr()
    assert code == 0, out
    section = json.loads((tmp_path / "out" / "gate-report.json").read_text())["mutation"]
    assert section["status"] == "present" and section["report"] == "mutation.json"
    assert section["sha256"] == hashlib.sha256((mutated / "full.json").read_bytes()).hexdigest()
    assert f"requirement: mutation score >= {score:g}: met, decided by {tmp_path / 'out'}" in out

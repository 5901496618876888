"""A release passes only on evidence about the code released: each way that evidence of other code
passed `pv gate --release`, rebuilt from genuine runs, is refused now, naming why."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from gate_testing import GitProject, read_report
from pv.attest.envelopes import MUTATION_REPORT, envelope, file_subjects, statement, write_bundle
from pv.attest.inputs import FolderTree, InputRule, rule_digests

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    return GitProject(pytester, monkeypatch)


def test_a_signed_report_from_another_repository_is_refused(
    project: GitProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the same contract file and the same trusted host, but other code
    other = project.clone(tmp_path / "other")
    tests = other.root / "test_ft_syn.py"
    tests.write_text(tests.read_text().replace("return target if target <= native else native",
                                               "return min(target, native)"))
    other.commit("the other repository's code")
    cpu, gpu = other.cpu(), other.gpu()
    code, out, _ = other.gate(capsys, "--release", cpu, gpu)
    assert code == 0, out  # genuine, signed evidence about the other repository's code
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 1
    for report in (cpu, gpu):
        assert f"{report}: refused: its inputs are not those of commit " in out
    assert "test_ft_syn.py differs" in out


def test_a_plain_run_with_its_report_in_the_root_and_an_untracked_conftest_is_refused(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "sub").mkdir()
    (project.root / "sub" / "conftest.py").write_text("# untracked: pytest loads it, git status lists it\n")
    report = project.report("root", "cpu", "-m", "not gpu", cleanroom=False)
    moved = project.root / "root-report.json"
    report.rename(moved)  # where the report lies no longer hides the untracked files
    data = read_report(moved)
    assert data["environment"]["git"]["dirty"] is True and data["environment"]["git"]["cleanroom"] is False
    assert "sub/conftest.py" in data["inputs"]["files"]
    code, out, _ = project.gate(capsys, "--release", moved, project.gpu())
    assert code == 1
    assert f"{moved}: refused: not a clean-room run" in out
    assert f"{moved}: refused: made from a working tree with uncommitted changes" in out


SHADOWED = '''\
def value():
    return 1
'''
SHADOW = '''\
def value():
    return 2
'''
PYC_TEST = '''
import synmod


def test_the_module_is_the_committed_one():
    assert synmod.value() == {expected}
'''


def _plant_a_shadowing_pyc(root: Path) -> None:
    """A ``__pycache__`` file compiled from other code, its header made to match the committed source."""
    source = root / "synmod.py"
    shadow = root / "shadow.py"
    shadow.write_text(SHADOW)
    cache = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(shadow), cfile=str(cache), doraise=True)
    shadow.unlink()
    stat = source.stat()
    data = bytearray(cache.read_bytes())
    data[8:12] = int(stat.st_mtime).to_bytes(4, "little")
    data[12:16] = (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    cache.write_bytes(bytes(data))


def test_a_shadowing_pyc_reaches_a_plain_run_but_never_a_clean_room(
    project: GitProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.root / "synmod.py").write_text(SHADOWED)
    (project.root / "test_pyc.py").write_text("import pytest\n" + PYC_TEST.format(expected=2))
    project.commit("a module")
    _plant_a_shadowing_pyc(project.root)  # ignored by git: the tree stays clean
    monkeypatch.syspath_prepend(str(project.root))
    plain = project.report("plain", "cpu", "-m", "not gpu", paths=("test_pyc.py",), cleanroom=False)
    assert read_report(plain)["session"]["outcomes"]["passed"] == 1  # the shadow ran: value() == 2
    assert read_report(plain)["environment"]["git"]["dirty"] is False
    code, out, _ = project.gate(capsys, "--release", plain)
    assert f"{plain}: refused: not a clean-room run" in out
    monkeypatch.delitem(sys.modules, "synmod", raising=False)
    clean = project.report("clean", "cpu", "-m", "not gpu", paths=("test_pyc.py",))
    assert read_report(clean)["session"]["outcomes"]["failed"] == 1  # the committed source: value() == 1


def _mutation_bundle(path: Path, predicate: dict, key) -> Path:
    subject = file_subjects(predicate["inputs"]["files"])
    return write_bundle(path, [envelope(statement(subject, MUTATION_REPORT, predicate), key)])


EVIDENCE = "reports/mutation.intoto.jsonl"


def _asks_for_a_mutation_score(project: GitProject) -> Path:
    """Make the project's gate ask for a mutation score, from the evidence at :data:`EVIDENCE`."""
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + f'mutation_report = "{EVIDENCE}"\n')
    contract = project.root / "contracts" / "syn-v1.yaml"
    contract.write_text(contract.read_text().replace("  name: synthetic gate\n",
                                                     "  name: synthetic gate\n  min_mutation_score: 0.9\n"))
    project.commit("a mutation score")
    return project.root / EVIDENCE


def test_a_hand_written_mutation_report_signed_by_the_host_is_recomputed_not_believed(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    evidence = _asks_for_a_mutation_score(project)
    forged = {"score": 1.0, "killed": 0, "survived": 7, "modules": [],
              "inputs": {"rule": {"folders": [], "files": []}, "files": {}, "outside": []},
              "mutants": [{"key": f"m{i}", "status": "survived"} for i in range(7)]}
    _mutation_bundle(evidence, forged, project.key)
    cpu = project.cpu()
    code, out, _ = project.gate(capsys, cpu)
    assert code == 1, out  # it judged no file: the project's configuration and conftest are not its inputs
    assert f"mutation evidence {EVIDENCE} is stale: conftest.py was not an input of the run" in out
    forged["inputs"]["files"] = rule_digests(FolderTree(project.root), InputRule())
    _mutation_bundle(evidence, forged, project.key)
    code, out, _ = project.gate(capsys, cpu)
    assert code == 1, out  # bound to the files, the score is recomputed from its mutants: 0 of 7
    assert f"score 0 < 0.9 in {EVIDENCE} (7 survived)" in out


def test_an_equivalents_file_outside_the_project_is_no_evidence(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    evidence = _asks_for_a_mutation_score(project)
    killed = [{"key": f"m{i}", "status": "killed"} for i in range(9)] + [{"key": "m9", "status": "equivalent"}]
    files = rule_digests(FolderTree(project.root), InputRule())
    forged = {"modules": [], "judged": {"equivalents": {"path": "/tmp/trust-me.yaml", "sha256": "0" * 64}},
              "inputs": {"rule": {"folders": [], "files": []}, "files": files, "outside": []}, "mutants": killed}
    _mutation_bundle(evidence, forged, project.key)
    code, out, _ = project.gate(capsys, project.cpu())
    assert code == 1, out
    assert "its equivalents file /tmp/trust-me.yaml is not a file of the project among the run's inputs" in out


def _verify(root: Path, out: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pv", "verify", "--out", out, "--falsifiers", "test_ft_syn.py"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_pv_verify_runs_at_once_both_record_a_clean_tree(project: GitProject) -> None:
    (project.root / ".gitignore").write_text("__pycache__/\n")  # their output folders are not ignored
    project.commit("outputs not ignored")
    env = {**os.environ, "PV_KEY_DIR": str(project.key_dir)}
    runs = [_verify(project.root, out, env) for out in ("out-a", "out-b")]
    for run in runs:
        output, _ = run.communicate(timeout=600)
        assert run.returncode in (0, 1), output.decode()
    for out in ("out-a", "out-b"):
        git = read_report(project.root / out / "gate-report.intoto.jsonl")["environment"]["git"]
        assert git["dirty"] is False and git["cleanroom"] is True


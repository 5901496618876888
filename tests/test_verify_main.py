"""`pv verify`: validate, run checks and falsifiers in a pytest subprocess, report, gate the active profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate_testing import REQUIRE, contract_text, falsifier_source, read_report, write_project
from pv.cli import main
from pv.cli.verify import pytest_command


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pv project (the working directory): contracts/, profiles/ and falsifiers/ (a cpu falsifier,
    a gpu one, the conftest declaring its mutant).

    The known profiles are pv's built-in ones with this project's layers (its profiles/), so a run
    under the project's profiles/cpu.yaml is evidence for the gate.
    """
    monkeypatch.chdir(tmp_path)
    for name in ("PV_ROOT", "PV_PROFILES"):
        monkeypatch.delenv(name, raising=False)
    tests = falsifier_source(
        "FT-A-001", mutants=False, prelude="assert os.environ.get('SYN_BREAK_CPU') != '1', 'the truncation is off by one'"
    ) + falsifier_source("FT-G-001", marks=["gpu"], mutants=False)
    write_project(tmp_path, {"syn-v1": contract_text(list(REQUIRE), REQUIRE, checks={"OB-TRUE": "x + 0 == x"})}, {})
    (tmp_path / "falsifiers").mkdir()
    write_project(tmp_path / "falsifiers", {}, {"test_ft_syn.py": tests})
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    return tmp_path


def verify(project: Path, capfd: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main([
        "verify",
        "--contracts", str(project / "contracts"),
        "--falsifiers", str(project / "falsifiers"),
        "--out", str(project / "out"),
        "--profile", str(project / "profiles" / "cpu.yaml"),
        *extra,
    ])
    out, err = capfd.readouterr()
    return code, out, err


def test_the_command_runs_everything_with_mutants_and_deselects_gpu_tests_on_a_cpu(tmp_path: Path) -> None:
    cpu = pytest_command("c", ["f"], tmp_path / "o", None, gpu=False, workers=None)
    assert cpu[1:5] == ["-m", "pytest", "c", "f"]
    assert "--pv-vacuity" in cpu and cpu[-2:] == ["-m", "not gpu"]
    assert f"--pv-gate-report={tmp_path / 'o' / 'gate-report.intoto.jsonl'}" in cpu
    assert f"--junitxml={tmp_path / 'o' / 'junit.xml'}" in cpu
    gpu = pytest_command("c", ["f"], tmp_path / "o", "h100", gpu=True, workers="2")
    assert "not gpu" not in gpu and "--pv-profile=h100" in gpu and "--numprocesses=2" in gpu


@pytest.mark.slow
def test_verify_passes_the_active_profile_and_writes_every_report(
    project: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, out, err = verify(project, capfd)
    assert code == 0, out + err
    assert "validate: 1 contracts, 0 errors" in out
    assert "tests not marked gpu, with mutants" in out
    assert "gate for profile(s) cpu: PASS" in out
    assert "requirement: FT-G-001 on h100: deferred to the release gate" in out
    for name in ("gate-report.intoto.jsonl", "junit.xml", "summary.md", "gate.json"):
        assert (project / "out" / name).is_file(), name
    report = read_report(project / "out" / "gate-report.intoto.jsonl")
    assert report["session"]["markexpr"] == "not gpu"
    assert {e["obligation"]: e["status"] for e in report["obligations"]}["OB-TRUE"] == "proved"
    assert json.loads((project / "out" / "gate.json").read_text())["verdict"] == "pass"


@pytest.mark.slow
def test_verify_fails_with_the_reason_when_a_falsifier_fails(
    project: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYN_BREAK_CPU", "1")
    code, out, _ = verify(project, capfd)
    assert code == 1
    assert "- FT-A-001: failed on cpu" in out and "the truncation is off by one" in out
    assert "gate for profile(s) cpu: FAIL" in out


def test_an_invalid_contract_stops_verify_before_anything_runs(
    project: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    contract = project / "contracts" / "syn-v1.yaml"
    contract.write_text(contract.read_text().replace("qa_gate:", "qa_gates:"))
    code, out, _ = verify(project, capfd)
    assert code == 1
    assert "syn-v1.yaml:" in out and "qa_gates" in out
    assert "the contracts do not validate; nothing else was run" in out
    assert not (project / "out").exists()


def test_missing_folders_are_usage_errors(project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(project, capfd, "--falsifiers", str(project / "nope"))
    assert code == 2
    assert "--falsifiers:" in err and "nope is not a file or folder" in err


def test_an_output_folder_that_cannot_be_created_is_a_usage_error(
    project: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (project / "file").write_text("")
    code, _, err = verify(project, capfd, "--out", str(project / "file" / "out"))
    assert code == 2
    assert "--out" in err and "cannot create the folder" in err and "Traceback" not in err

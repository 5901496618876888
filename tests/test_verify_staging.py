"""`pv verify` writes a run's reports into a new folder and swaps it in whole: an interrupted or
broken run leaves the previous reports as they were, never an old decision beside a new or missing
report, and a folder holding other files is never replaced."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from gate_testing import REQUIRE, contract_text, write_project
from pv._util import folders
from pv.cli import main, verify

OLD = {
    "gate-report.intoto.jsonl": '{"old": "report"}',
    "junit.xml": "<testsuites/>",
    "summary.md": "# old run\n",
    "gate.json": json.dumps({"verdict": "pass"}),
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the run's inputs must lie in the project it runs in
    write_project(tmp_path, {"syn-v1": contract_text(list(REQUIRE), REQUIRE)}, {})
    (tmp_path / "falsifiers").mkdir()
    out = tmp_path / "reports" / "out"
    out.mkdir(parents=True)
    for name, text in OLD.items():
        (out / name).write_text(text)
    return tmp_path


def run_verify(project: Path) -> int:
    return main(["verify", "--contracts", str(project / "contracts"), "--falsifiers", str(project / "falsifiers"),
                 "--out", str(project / "reports" / "out"), "--profile", str(project / "profiles" / "cpu.yaml")])


def pytest_writing_a_report_then(outcome: BaseException | None):
    """A stand-in for the pytest child process (``verify.run_child``): writes a new gate report where it is told, then ``outcome``."""
    calls = []

    def fake_run(command, cwd, env=None):
        calls.append(command)
        report = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--pv-gate-report="))
        Path(report).write_text('{"new": "report"}')
        if outcome is not None:
            raise outcome
        raise AssertionError("not reached")

    return fake_run, calls


def folder_contents(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in folder.iterdir()}


def test_an_interrupt_after_the_new_report_leaves_the_old_run_whole(project: Path, monkeypatch, capsys) -> None:
    fake, calls = pytest_writing_a_report_then(KeyboardInterrupt())
    monkeypatch.setattr(verify, "run_child", fake)
    assert run_verify(project) == 130
    assert calls, "the pytest step ran"
    assert folder_contents(project / "reports" / "out") == OLD
    assert sorted(path.name for path in (project / "reports").iterdir()) == ["out"]  # no staging left behind


def test_a_run_without_a_report_leaves_the_old_run_whole(project: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(verify, "run_child", lambda command, cwd, env=None: (4, None))
    assert run_verify(project) == 2
    assert "wrote no gate report; the previous reports" in capsys.readouterr().err
    assert folder_contents(project / "reports" / "out") == OLD


@dataclasses.dataclass
class _Report:
    path: str
    data: dict = dataclasses.field(default_factory=lambda: {"inputs": {"outside": []}})


class _Decision:
    passed = False


def _pytest_writing_a_report(command, cwd, env=None):
    report = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--pv-gate-report="))
    Path(report).write_text('{"new": "report"}')
    return 1, None


def test_an_interrupt_inside_the_swap_leaves_no_decision_without_its_report(project: Path, monkeypatch) -> None:
    renames = []
    real_rename = folders.os.rename

    def rename(source, destination):
        renames.append((source, destination))
        if len(renames) == 2:  # the old folder is out of the way, the new one not yet in place
            raise KeyboardInterrupt
        real_rename(source, destination)

    monkeypatch.setattr(folders.os, "rename", rename)
    monkeypatch.setattr(verify, "run_child", _pytest_writing_a_report)
    monkeypatch.setattr("pv.evidence.gate.load_report", lambda path, trusted=None: _Report(str(path)))
    monkeypatch.setattr("pv.evidence.gate.decide", lambda reports, contracts, release, **given: _Decision())
    monkeypatch.setattr("pv.evidence.gate_output.format_json", lambda decision: '{"verdict": "fail"}')
    assert run_verify(project) == 130
    assert len(renames) == 2
    assert not (project / "reports" / "out").exists()  # no old decision beside the new report, nor the reverse


def test_a_folder_with_other_files_is_never_replaced(project: Path, monkeypatch, capsys) -> None:
    (project / "reports" / "out" / "notes.txt").write_text("mine")
    fake, calls = pytest_writing_a_report_then(KeyboardInterrupt())
    monkeypatch.setattr(verify, "run_child", fake)
    assert run_verify(project) == 2
    assert "holds files pv did not write (notes.txt)" in capsys.readouterr().err
    assert calls == [] and folder_contents(project / "reports" / "out") == {**OLD, "notes.txt": "mine"}


def test_the_swapped_in_folder_has_the_mode_mkdir_would_give(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with folders.staged_folder(tmp_path / "out", ("a.txt",), "test") as staging:
            (staging / "a.txt").write_text("a")
    finally:
        os.umask(mask)
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755

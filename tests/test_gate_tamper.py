"""`pv gate` refuses reports that were edited, are incomplete, or were made from another contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gate_testing import GitProject

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    return GitProject(pytester, monkeypatch)


def refused(project: GitProject, capsys: pytest.CaptureFixture[str], *reports: Path) -> str:
    code, out, err = project.gate(capsys, "--release", *reports)
    assert code == 2, out + err
    assert out == ""
    assert err.startswith("pv gate: error: ")
    assert "Traceback" not in err
    return err


def test_a_genuine_report_is_accepted(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = project.gate(capsys, project.cpu())
    assert code == 0, out + err


def test_an_edited_status_breaks_the_seal(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    def flip(data: dict) -> None:
        entry = next(f for f in data["falsifiers"] if f["id"] == "FT-G-001")
        entry["status"], entry["reason"] = "passed", None
        entry["tests"] = [{"nodeid": "x", "outcome": "passed", "reason": None, "duration_s": 0, "evidence": []}]

    signed = project.edit(project.cpu(), flip)
    err = refused(project, capsys, signed)
    assert f"{signed}:2: the signature by trusted key {project.key.key_id[:16]}... does not match the payload" in err
    unsigned = project.edit(project.cpu(name="unsigned", key_dir=project.root.parent / "no-key"), flip)
    err = refused(project, capsys, unsigned)
    assert f"{unsigned}: checksum mismatch" in err
    assert "the report was edited or corrupted after it was written" in err


def test_an_edited_digest_is_refused(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    unsigned = project.cpu(key_dir=project.root.parent / "no-key")
    report = project.edit(unsigned, lambda d: d["checksum"].update(digest="0" * 64))
    assert "checksum mismatch" in refused(project, capsys, report)


def test_an_edited_contract_hash_is_refused_naming_the_contract(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = project.edit(project.cpu(), lambda d: d["contracts"][0].update(sha256="ab" * 32), reseal=True)
    err = refused(project, capsys, report)
    assert "contract syn-v1 has sha256 abababababababab... in the report" in err
    assert "syn-v1.yaml" in err and "another version of the contract" in err


def test_a_contract_changed_after_the_run_is_refused(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = project.cpu()
    contract = project.root / "contracts" / "syn-v1.yaml"
    contract.write_text(contract.read_text().replace("synthetic gate", "a renamed gate"))
    assert "contract syn-v1 has sha256" in refused(project, capsys, report)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("session"), "$: 'session' is a required property"),
        (lambda d: d["falsifiers"][0].pop("status"), "$.falsifiers[0]: 'status' is a required property"),
        (lambda d: d["session"].update(tests_executed=-1), "$.session.tests_executed: -1 is less than the minimum of 0"),
        (lambda d: d["falsifiers"][0].update(status="green"), "$.falsifiers[0].status: 'green' is not one of"),
        (lambda d: d.pop("checksum"), "$: 'checksum' is a required property"),
        (lambda d: d.update(format="something/9"), "$.format: 'pv-gate-report/3' was expected"),
    ],
)
def test_missing_or_malformed_fields_are_refused(
    project: GitProject, capsys: pytest.CaptureFixture[str], change: Callable[[dict], None], message: str
) -> None:
    unsigned = project.cpu(key_dir=project.root.parent / "no-key")
    report = project.edit(unsigned, change, reseal="checksum" not in message)
    err = refused(project, capsys, report)
    assert "not a valid gate report (pv.schemas/gate-report.schema.json)" in err
    assert message in err


def test_unreadable_reports_are_refused(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    broken = project.root / "reports" / "broken.json"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text('{"format": "pv-gate-report/1",\n "session": }')
    assert f"{broken}:1:31: not JSON" in refused(project, capsys, broken)
    assert "no such evidence file" in refused(project, capsys, project.root / "reports" / "missing.json")


def test_one_bad_report_refuses_the_whole_set(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = project.cpu()
    bad = project.edit(project.gpu(), lambda d: d["profile"].update(name="cpu"))
    assert "does not match the payload" in refused(project, capsys, good, bad)

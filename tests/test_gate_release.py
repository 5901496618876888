"""`pv gate` over real gate reports of synthetic falsifier runs: merging, scope, and every way to fail."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

import pytest

from gate_testing import CPU_ONLY, GPU_ONLY, WEAK_CHECK, GitProject, read_report

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    return GitProject(pytester, monkeypatch)


def test_cpu_and_gpu_reports_together_pass_the_release(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = project.gate(capsys, "--release", project.cpu(), project.gpu())
    assert code == 0, out
    assert ": PASS (1 of 1 gates pass)" in out
    assert re.search(r"^syn-v1 +F-SYN-001 +PASS$", out, re.M)


def test_the_cpu_half_alone_passes_its_profile_but_not_the_release(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cpu = project.cpu()
    code, out, _ = project.gate(capsys, cpu)
    assert code == 0, out
    assert "gate for profile(s) cpu: PASS" in out
    assert f"requirement: FT-A-001 on cpu: met, decided by {cpu}" in out
    assert "requirement: FT-G-001 on h100: deferred to the release gate" in out
    decision = json.loads(project.gate(capsys, "--format", "json", cpu)[1])
    deferred = decision["gates"][0]["requirements"][1]
    assert deferred["status"] == "deferred" and deferred["report"] is None
    assert "a gate for profile(s) cpu does not decide it (pv gate --release does)" in deferred["detail"]
    code, out, _ = project.gate(capsys, "--release", cpu)
    assert code == 1
    assert "- FT-G-001: no evidence: required on h100, and no accepted report comes from any of them" in out
    assert "requirement: FT-G-001 on h100: unmet, no report decides it" in out
    assert ": FAIL (0 of 1 gates pass)" in out


def test_the_gpu_half_alone_fails_the_release(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = project.gate(capsys, "--release", project.gpu())
    assert code == 1
    assert "- FT-A-001: no evidence: required on cpu, and no accepted report comes from any of them" in out


def test_a_failing_gpu_half_fails_the_merged_release(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = project.gate(capsys, "--release", project.cpu(), project.gpu(SYN_BREAK_GPU="1"))
    assert code == 1
    assert "- FT-G-001: failed on h100" in out
    assert out.count("- FT-G-001") == 1  # one reason per cause
    assert "peak memory over the threshold" in out


def test_reports_of_several_hosts_merge_and_one_failure_fails_them_all(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    first, gpu = project.cpu(name="host-a"), project.gpu()
    code, out, _ = project.gate(capsys, "--release", first, project.cpu(name="host-b"), gpu)
    assert code == 0, out
    code, out, _ = project.gate(capsys, "--release", first, project.cpu(name="host-c", SYN_BREAK_CPU="1"), gpu)
    assert code == 1
    assert "- FT-A-001: failed on cpu (" in out and "host-c.json): " in out
    assert "the truncation is off by one" in out


def test_a_skipped_required_falsifier_fails_the_release(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = project.gate(capsys, "--release", project.cpu(SYN_SKIP="1"), project.gpu())
    assert code == 1
    assert "- FT-A-001: required on cpu: skipped on cpu" in out
    assert "no test data on this host" in out


def test_a_report_of_zero_tests_fails_the_gate(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = project.report("empty", "cpu", "-k", "no_such_test")
    code, out, _ = project.gate(capsys, empty)
    assert code == 1
    assert "zero tests executed: this run is evidence of nothing" in out
    code, out, _ = project.gate(capsys, "--release", project.cpu(), project.gpu(), empty)
    assert code == 1


def test_a_report_whose_profile_does_not_match_its_device_counts_for_nothing(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pretend = project.report("pretend", "h100", *GPU_ONLY)  # h100 chosen on a machine that is not one
    code, out, _ = project.gate(capsys, "--release", project.cpu(), pretend)
    assert code == 1
    assert f"{pretend}: refused: claims profile h100 (discrete: a CUDA device named like H100" in out
    assert "its results count for no profile" in out
    assert "- FT-G-001: no evidence: required on h100, and no accepted report comes from any of them" in out


def test_the_release_is_bound_to_the_inputs_of_the_commit_not_to_one_commit(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cpu = project.cpu()
    (project.root / "notes.txt").write_text("notes beside the code, which no verdict reads")
    gpu = project.gpu()
    assert read_report(gpu)["environment"]["git"]["dirty"] is False  # an untracked file that is no input
    project.commit("notes")  # a later commit with the same inputs: the older cpu report still holds
    code, out, _ = project.gate(capsys, "--release", cpu, gpu)
    assert code == 0, out
    test_file = project.root / "test_ft_syn.py"
    test_file.write_text(test_file.read_text() + "\n# a later change of a test\n")
    dirty = project.gpu()
    code, out, _ = project.gate(capsys, "--release", cpu, dirty)
    assert code == 1
    assert f"{dirty}: refused: made from a working tree with uncommitted changes" in out
    project.commit("a test changed")
    code, out, _ = project.gate(capsys, "--release", cpu, project.gpu())
    assert code == 1
    assert f"{cpu}: refused: its inputs are not those of commit " in out and "test_ft_syn.py differs" in out


@pytest.mark.parametrize("fmt", ["json", "markdown", "junit"])
def test_output_formats_carry_the_verdict_and_reasons(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    cpu = project.cpu()
    code, out, _ = project.gate(capsys, "--release", "--format", fmt, cpu)
    assert code == 1
    if fmt == "json":
        data = json.loads(out)
        assert data["verdict"] == "fail" and data["release"] is True
        assert data["gates"][0]["reasons"] == [
            "FT-G-001: no evidence: required on h100, and no accepted report comes from any of them"
        ]
        decided = {r["falsifier"]: (r["status"], r["report"]) for r in data["gates"][0]["requirements"]}
        assert decided == {"FT-A-001": ("met", str(cpu)), "FT-G-001": ("unmet", None)}
    elif fmt == "markdown":
        assert out.startswith("## pv gate: FAIL")
        assert ("| syn-v1 | F-SYN-001 | FAIL | FT-G-001: no evidence: required on h100, and no accepted report "
                f"comes from any of them | FT-A-001 on cpu: met, decided by {cpu}<br>FT-G-001 on h100: unmet, "
                "no report decides it |") in out
    else:
        suite = ET.fromstring(out).find("testsuite")
        assert suite is not None and suite.get("failures") == "1" and suite.get("tests") == "2"
        failure = suite.find("testcase[@name='F-SYN-001']/failure")
        assert failure is not None and "FT-G-001" in failure.get("message", "")


def test_output_file_is_written_instead_of_stdout(
    project: GitProject,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = project.root / "reports" / "gate.md"
    code, out, _ = project.gate(capsys, "--format", "markdown", "-o", target, project.cpu())
    assert code == 0 and out == ""
    assert target.read_text().startswith("## pv gate: PASS")
    blocked = project.root / "reports" / "gate.md" / "inside.md"
    code, _, err = project.gate(capsys, "-o", blocked, project.cpu())
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_vacuous_falsifier_fails_everywhere(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weak = GitProject(pytester, monkeypatch, cpu_check=WEAK_CHECK)
    code, out, _ = weak.gate(capsys, weak.cpu())
    assert code == 1
    assert "- FT-A-001: vacuous on cpu" in out
    assert "mutant returns-native survived" in out


def test_a_falsifier_never_run_against_its_mutants_is_not_evidence(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = GitProject(pytester, monkeypatch, mutants=False)
    code, out, _ = plain.gate(capsys, plain.cpu())
    assert code == 1
    assert "passed on cpu" in out and "its mutants were not run (run with --pv-vacuity)" in out


def test_bad_usage_is_exit_2(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = project.gate(capsys, "--contracts", str(project.root / "nope"), project.cpu())
    assert code == 2
    assert "--contracts:" in err and "is not a folder" in err
    assert os.path.exists(project.root / "reports" / "cpu.json")


def test_a_gate_that_requires_nothing_fails_in_both_modes(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = GitProject(pytester, monkeypatch, require={})
    cpu, gpu = empty.cpu(), empty.gpu()
    for mode in ([], ["--release"]):
        code, out, _ = empty.gate(capsys, *mode, cpu, gpu)
        assert code == 1, out
        assert "- no evidence: qa_gate requires no falsifier (qa_gate.require), so nothing is evidence for it" in out
        assert "FT-A-001 (not required)" not in out  # it passed on cpu: nothing to say
        assert "note: FT-G-001 (not required) passed nowhere" not in out  # it passed on h100


def test_a_falsifier_no_gate_requires_is_noted_when_it_passed_nowhere(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    partial = GitProject(pytester, monkeypatch, require={"FT-G-001": ["h100"]})
    code, out, _ = partial.gate(capsys, partial.cpu(SYN_SKIP="1"), partial.gpu())
    assert "note: FT-A-001 (not required) passed nowhere: skipped on cpu: " in out
    assert "no test data on this host" in out


def test_a_collection_error_fails_the_gate(project: GitProject, capsys: pytest.CaptureFixture[str]) -> None:
    (project.root / "test_ft_broken.py").write_text("import no_such_module_here\n")
    report = project.report("cpu", "cpu", *CPU_ONLY, paths=("test_ft_syn.py", "test_ft_broken.py"))
    code, out, _ = project.gate(capsys, report)
    assert code == 1
    assert "cpu.json: collection error in test_ft_broken.py: " in out and "no_such_module_here" in out

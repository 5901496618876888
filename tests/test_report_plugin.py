"""The gate-report pytest plugin: real pytest runs of synthetic falsifiers, and their reports."""

from __future__ import annotations

import hashlib
from importlib import metadata

import pytest

from gate_testing import (
    WEAK_CHECK,
    contract_text,
    falsifier_source,
    read_report,
    write_project,
)
from pv.plugins.report import evidence_entry
from pv.evidence.integrity import checksum_matches
from pv.evidence.report_schema import schema_problems

pytest_plugins = ["pytester"]


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    """Run pytest in-process with a gate report and the synthetic cpu profile."""
    out = pytester.path / "out" / "report.json"
    result = pytester.runpytest(
        "-p", "no:cacheprovider",
        f"--pv-gate-report={out}",
        f"--pv-gate-markdown={pytester.path / 'out' / 'summary.md'}",
        f"--pv-profile={pytester.path / 'profiles' / 'cpu.yaml'}",
        *args,
    )
    return result, read_report(out)


def by_id(report: dict) -> dict[str, dict]:
    return {entry["id"]: entry for entry in report["falsifiers"]}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """Falsifiers of every outcome; the contract names one more falsifier that has no test."""
    ids = [f"FT-A-00{n}" for n in range(1, 9)]
    tests = (
        falsifier_source("FT-A-001", prelude="import time\ntime.sleep(0)")
        + falsifier_source("FT-A-002", WEAK_CHECK)
        + falsifier_source("FT-A-003", "assert code(5, 3) == 5")
        + falsifier_source("FT-A-004", prelude="pytest.skip('needs CUDA')")
        + falsifier_source("FT-A-005", marks=["gpu"])
        + falsifier_source("FT-A-006", mutants=False)
        + falsifier_source("FT-A-008", prelude="if mutant:\n    pytest.skip('the mutant needs a GPU')")
    )
    write_project(
        pytester.path,
        {"syn-v1": contract_text(ids, {ft: ["cpu"] for ft in ids})},
        {"test_syn.py": tests},
    )
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    return pytester


def test_each_falsifier_gets_the_status_its_tests_earned(project: pytest.Pytester) -> None:
    result, report = run(project, "test_syn.py", "-m", "not gpu")
    assert result.ret == 1  # FT-A-002 (vacuous) and FT-A-003 (failed) fail the pytest run
    found = by_id(report)
    assert {k: v["status"] for k, v in found.items()} == {
        "FT-A-001": "passed",
        "FT-A-002": "vacuous",
        "FT-A-003": "failed",
        "FT-A-004": "skipped",
        "FT-A-005": "not-run",
        "FT-A-006": "passed",
        "FT-A-007": "not-run",
        "FT-A-008": "vacuous",
    }
    assert "mutant returns-native survived" in found["FT-A-002"]["reason"]
    assert "assert 3 == 5" in found["FT-A-003"]["reason"]
    assert found["FT-A-004"]["reason"].endswith("needs CUDA")
    assert found["FT-A-005"]["reason"] == "2 test(s) deselected by -m 'not gpu'"
    assert found["FT-A-007"]["reason"] == "no collected test is marked falsifies(FT-A-007)"
    assert found["FT-A-008"]["reason"] == (
        "mutant returns-native was skipped (the mutant needs a GPU): not shown able to fail"
    )
    assert [m["status"] for m in found["FT-A-001"]["mutants"]] == ["killed"]
    assert found["FT-A-006"]["mutants"] == []
    assert all(entry["contract"] == "syn-v1" for entry in found.values())


def test_report_is_schema_valid_sealed_and_counts_tests(project: pytest.Pytester) -> None:
    _, report = run(project, "test_syn.py", "-m", "not gpu")
    assert schema_problems(report) == []
    assert checksum_matches(report)
    session = report["session"]
    # 7 collected falsifiers minus the gpu one: 6 tests x 2 runs + FT-A-006 (no mutant)
    assert session["tests_collected"] == 11
    assert session["outcomes"]["skipped"] == 3
    assert session["tests_executed"] == 8
    assert session["markexpr"] == "not gpu"
    assert session["args"] == ["test_syn.py"]
    assert report["profile"]["name"] == "cpu"
    assert report["profile"]["source"] == "option"
    contract = report["contracts"][0]
    assert contract["name"] == "syn-v1" and contract["path"] == "contracts/syn-v1.yaml"
    assert contract["sha256"] == hashlib.sha256(
        (project.path / "contracts" / "syn-v1.yaml").read_bytes()
    ).hexdigest()


def test_environment_names_versions_git_host_and_device(project: pytest.Pytester) -> None:
    _, report = run(project, "test_syn.py", "-k", "FT_A_001")
    env = report["environment"]
    import torch

    assert env["versions"]["torch"] == metadata.version("torch")
    assert env["versions"]["pytest"] == pytest.__version__
    # the synthetic project is no git checkout, and a plain pytest run is no clean room
    assert env["git"] == {"commit": None, "tree": None, "dirty": None, "cleanroom": False}
    assert env["device"]["kind"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert env["host"]["cpu_count"] >= 1


def test_markdown_summary_lists_what_did_not_pass(project: pytest.Pytester) -> None:
    run(project, "test_syn.py", "-m", "not gpu")
    text = (project.path / "out" / "summary.md").read_text()
    assert "**8 tests executed**" in text
    assert "| FT-A-001 | syn-v1 | passed | 1 | 1/1 |" in text
    assert "| FT-A-002 | syn-v1 | vacuous | 1 | 0/1 |" in text
    assert "- FT-A-002: vacuous: mutant returns-native survived" in text
    assert "- FT-A-005: not-run: 2 test(s) deselected by -m 'not gpu'" in text
    assert len(text.splitlines()) < 40


def test_zero_executed_tests_is_recorded_and_fails_the_session(project: pytest.Pytester) -> None:
    result, report = run(project, "test_syn.py", "-k", "FT_A_004")  # collected, but only skips
    assert report["session"]["tests_executed"] == 0
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "ZERO tests executed" in result.stdout.str()
    assert "Zero tests executed" in (project.path / "out" / "summary.md").read_text()


def test_without_a_gate_report_only_the_falsifier_protocol_judges_an_all_skipped_run(
    project: pytest.Pytester,
) -> None:
    # pv's falsifier plugin, in any pv project: every selected falsifier skipped is not a pass
    result = project.runpytest("-p", "no:cacheprovider", "test_syn.py", "-k", "FT_A_004")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*every selected falsifier skipped (2): nothing was falsified*"])
    assert not (project.path / "out").exists()


def test_setup_errors_xfails_and_teardown_errors_are_not_passes(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, {}, {"test_odd.py": '''

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown broke")


@pytest.mark.falsifies("FT-B-001")
def test_setup_error(broken):
    pass


@pytest.mark.falsifies("FT-B-002")
@pytest.mark.xfail(reason="known defect", strict=False)
def test_xfail():
    assert False


@pytest.mark.falsifies("FT-B-003")
def test_teardown_error(bad_teardown):
    pass
'''})
    _, report = run(pytester, "test_odd.py")
    found = by_id(report)
    assert found["FT-B-001"]["status"] == "error"
    assert "error in setup: RuntimeError: fixture broke" in found["FT-B-001"]["reason"]
    assert found["FT-B-002"]["status"] == "failed"
    assert found["FT-B-002"]["tests"][0]["outcome"] == "xfailed"
    assert found["FT-B-003"]["status"] == "error"
    assert "error in teardown" in found["FT-B-003"]["reason"]
    assert found["FT-B-001"]["contract"] is None


def test_collection_errors_are_recorded_and_named(pytester: pytest.Pytester) -> None:
    write_project(
        pytester.path,
        {"syn-v1": contract_text(["FT-C-001"], {"FT-C-001": ["cpu"]})},
        {"test_broken.py": "import no_such_module_here\n" + falsifier_source("FT-C-001")},
    )
    _, report = run(pytester, "test_broken.py")
    assert report["session"]["collection_errors"][0]["nodeid"] == "test_broken.py"
    assert "no_such_module_here" in report["session"]["collection_errors"][0]["message"]
    entry = by_id(report)["FT-C-001"]
    assert entry["status"] == "not-run"
    assert "collection errors in: test_broken.py" in entry["reason"]


def test_evidence_and_profile_fixtures(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, {}, {"test_measure.py": '''

@pytest.mark.falsifies("FT-D-001")
def test_measures(evidence, hw_profile):
    evidence("peak_memory", 1.5, "GiB")
    evidence("steps", 3)
    evidence("loss", float("nan"))
    assert hw_profile.name == "cpu"
    assert hw_profile.memory_gib == 16.0
'''})
    _, report = run(pytester, "test_measure.py")
    test = by_id(report)["FT-D-001"]["tests"][0]
    assert test["outcome"] == "passed"
    assert test["evidence"] == [
        {"key": "peak_memory", "value": 1.5, "unit": "GiB"},
        {"key": "steps", "value": 3, "unit": None},
        {"key": "loss", "value": "nan", "unit": None},
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [(("", 1), ValueError), (("k", [1]), TypeError), (("k", 1, 5), TypeError)],
)
def test_evidence_refuses_unusable_values(args: tuple, error: type) -> None:
    with pytest.raises(error):
        evidence_entry(*args)


def test_obligation_verdicts_reach_the_report(pytester: pytest.Pytester) -> None:
    write_project(
        pytester.path,
        {"syn-v1": contract_text([], {}, obligations=["OB-1", "OB-2"])},
        {"test_obligations.py": '''

@pytest.mark.parametrize("engine,status", [("exhaustive", "proved"), ("hypothesis", "refuted")])
def test_ob1(engine, status, record_property):
    record_property("pv_verdict", {"contract": "syn-v1", "obligation": "OB-1", "engine": engine,
                                   "status": status, "detail": "d", "duration_s": 0.1})
'''},
    )
    _, report = run(pytester, "test_obligations.py")
    entries = {e["obligation"]: e for e in report["obligations"]}
    assert entries["OB-1"]["status"] == "refuted"  # a refutation outweighs a proof by another engine
    assert [v["engine"] for v in entries["OB-1"]["verdicts"]] == ["exhaustive", "hypothesis"]
    assert entries["OB-2"]["status"] == "unchecked"  # no check block: never passed
    assert entries["OB-2"]["checked"] is False


def test_unknown_profile_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "--pv-gate-report=out/r.json", "--pv-profile=nonesuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown profile 'nonesuch'" in result.stderr.str()
    assert not (project.path / "out" / "r.json").exists()


def test_report_is_written_whole_into_a_new_folder(project: pytest.Pytester) -> None:
    run(project, "test_syn.py", "-k", "FT_A_001")
    out = project.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "summary.md"]


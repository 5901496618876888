"""A gate report does not depend on how the run was distributed: `-n 2` equals a serial run."""

from __future__ import annotations

import pytest

from gate_testing import WEAK_CHECK, contract_text, falsifier_source, read_report, without_times, write_project

pytest_plugins = ["pytester"]

IDS = [f"FT-X-{n:03d}" for n in range(1, 7)]


@pytest.mark.slow
def test_xdist_and_serial_runs_give_the_same_report(pytester: pytest.Pytester) -> None:
    tests = "".join(
        falsifier_source(ft, WEAK_CHECK if ft == "FT-X-002" else "assert code(152064, 151936) == 151936",
                         prelude="pytest.skip('no data')" if ft == "FT-X-003" else "")
        for ft in IDS[:4]
    ) + falsifier_source("FT-X-005", marks=["gpu"])
    write_project(pytester.path, {"syn-v1": contract_text(IDS, {ft: ["cpu"] for ft in IDS})}, {"test_ft_x.py": tests})
    (pytester.path / "test_zz_evidence.py").write_text(
        "import pytest\n\n\n@pytest.mark.falsifies('FT-X-004', mutants=['returns-native'])\n"
        "def test_more(evidence):\n    evidence('rows', 8192)\n"
    )
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    reports = {}
    for name, extra in (("serial", []), ("xdist", ["-n", "2"])):
        out = pytester.path / f"{name}.json"
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "test_ft_x.py", "test_zz_evidence.py", "-m", "not gpu",
            f"--pv-gate-report={out}", f"--pv-profile={pytester.path / 'profiles' / 'cpu.yaml'}", *extra,
        )
        assert result.ret == 1  # FT-X-002 is vacuous
        reports[name] = read_report(out)
    serial, xdist = (without_times(reports[k]) for k in ("serial", "xdist"))
    assert serial["session"]["tests_executed"] == 7
    assert {f["id"]: f["status"] for f in serial["falsifiers"]} == {
        "FT-X-001": "passed", "FT-X-002": "vacuous", "FT-X-003": "skipped",
        "FT-X-004": "passed", "FT-X-005": "not-run", "FT-X-006": "not-run",
    }
    for entry in serial["falsifiers"]:  # a stable order, whatever order the results arrived in
        assert [t["nodeid"] for t in entry["tests"]] == sorted(t["nodeid"] for t in entry["tests"])
    assert [f["id"] for f in serial["falsifiers"]] == sorted(IDS)
    assert xdist == serial

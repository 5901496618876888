"""The mutant mechanism (the pv.plugins.falsifiers plugin) and `pv vacuity`, on a small synthetic project.

The project (a ``[tool.pv]`` table) holds copies of pv-distill's conftest and
mutant registry (the pytest_pv_mutants hook), a contract declaring its falsifier ids, and falsifiers of
``distill.kd`` that kill, let survive, fail unmutated, or skip under the real
mutant ``kd-no-t-squared``.
"""

from __future__ import annotations

import io
import json
import sys
import shutil
from pathlib import Path

# Imported once here: pytester's in-process runs drop the modules they import, and torch's
# extension modules cannot be imported twice in one process.
import hypothesis  # noqa: F401
import pytest
import torch  # noqa: F401

import distill.kd  # noqa: F401
from pv import cli
from pv.evidence.statuses import MutantStatus
from pv.evidence.vacuity import ItemRun, format_table, result_from_runs

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]

CONTRACT = """\
falsification_tests:
- {id: FT-X-001, rule: r, prediction: p, test: t, if_fails: f}
- {id: FT-X-002, rule: r, prediction: p, test: t, if_fails: f}
"""

FALSIFIERS = '''\
import pytest
import torch

from distill import kd

S, T = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, 1.0, 3.0]])


@pytest.mark.falsifies("FT-X-001", mutants=["kd-no-t-squared"])
def test_kills():
    assert kd.kd_loss(S, T, 2.0).item() > 1.0  # 1.47 with T^2, 0.37 without


@pytest.mark.falsifies("FT-X-001", mutants=["kd-no-t-squared"])
def test_vacuous():
    assert kd.kd_loss(S, T, 2.0).item() >= 0.0


@pytest.mark.falsifies("FT-X-002", mutants=["kd-no-t-squared", "kd-reverse-kl"])
def test_broken():
    assert kd.kd_loss(S, T, 2.0).item() < 0.0


@pytest.mark.falsifies("FT-X-002", mutants=["kd-no-t-squared"])
def test_skips():
    pytest.skip("no device for this one")
'''


def _project(root: Path, falsifiers: dict[str, str]) -> Path:
    (root / "contracts").mkdir()
    (root / "contracts" / "x.yaml").write_text(CONTRACT)
    folder = root / "falsifiers"
    folder.mkdir()
    for helper in [REPO / "falsifiers" / "conftest.py", *sorted((REPO / "falsifiers").glob("ft_mutants*.py"))]:
        shutil.copy(helper, folder / helper.name)
    for name, text in falsifiers.items():
        (folder / name).write_text(text)
    (root / "pyproject.toml").write_text('[tool.pv]\ncontracts = "contracts"\nmodules = ["distill"]\n')
    return root


def test_result_rows_judge_each_mutant_against_the_unmutated_run() -> None:
    runs = [
        ItemRun("f.py::a[*]", ["FT-1"], None, "passed"),
        ItemRun("f.py::a[*]", ["FT-1"], "m1", "passed", "AssertionError"),
        ItemRun("f.py::a[*]", ["FT-1"], "m2", "failed"),
        ItemRun("f.py::b[*]", ["FT-2"], None, "failed", "boom"),
        ItemRun("f.py::b[*]", ["FT-2"], "m1", "passed"),
        ItemRun("f.py::c[*]", ["FT-2"], None, "skipped"),
        ItemRun("f.py::c[*]", ["FT-2"], "m1", "skipped", "no gpu"),
    ]
    result = result_from_runs(runs)
    assert [(r.falsifier, r.test, r.mutant, r.status) for r in result.rows] == [
        ("FT-1", "f.py::a", "m1", "killed"),
        ("FT-1", "f.py::a", "m2", "survived"),
        ("FT-2", "f.py::b", "m1", "unproven"),
        ("FT-2", "f.py::c", "m1", "skipped"),
    ]
    assert result.executed == 2
    assert set(result.baseline_failures) == {"f.py::b[*]", "f.py::c[*]"}
    assert len(result.problems()) == 5
    assert "4 mutant runs: 1 killed, 1 survived, 1 skipped, 1 unproven" in format_table(result)


def test_all_killed_is_no_problem_and_nothing_run_is_one() -> None:
    killed = result_from_runs([ItemRun("a[*]", ["FT-1"], None), ItemRun("a[*]", ["FT-1"], "m", "passed")])
    assert killed.problems() == []
    assert result_from_runs([]).problems() == ["no mutant run was executed"]


EXPECTED_ROWS = {
    ("FT-X-001", "test_ft_x.py::test_kills", "kd-no-t-squared", "killed"),
    ("FT-X-001", "test_ft_x.py::test_vacuous", "kd-no-t-squared", "survived"),
    ("FT-X-002", "test_ft_x.py::test_broken", "kd-no-t-squared", "unproven"),
    ("FT-X-002", "test_ft_x.py::test_broken", "kd-reverse-kl", "unproven"),
    ("FT-X-002", "test_ft_x.py::test_skips", "kd-no-t-squared", "skipped"),
}


def test_vacuity_run_inverts_and_records_each_outcome(pytester: pytest.Pytester) -> None:
    project = _project(pytester.path, {"test_ft_x.py": FALSIFIERS})
    log = project / "log.json"
    result = pytester.runpytest("falsifiers", "--pv-vacuity", f"--pv-vacuity-log={log}", "-p", "no:cacheprovider")
    # passed: 2 unmutated, 1 killed, 2 mutants of the broken one (inverted); failed: survived, broken
    result.assert_outcomes(passed=5, failed=2, skipped=2)
    result.stdout.fnmatch_lines(["*vacuous: *test_vacuous[[]mutant=kd-no-t-squared[]] still passes with mutant*"])
    runs = [ItemRun(**run) for run in json.loads(log.read_text())["runs"]]
    rows = {(r.falsifier, r.test, r.mutant, r.status) for r in result_from_runs(runs).rows}
    assert rows == EXPECTED_ROWS


def test_mutant_runs_record_the_mutant_property(pytester: pytest.Pytester) -> None:
    _project(pytester.path, {"test_ft_x.py": FALSIFIERS})
    reports = pytester.inline_run("falsifiers", "--pv-vacuity", "-p", "no:cacheprovider").getreports("pytest_runtest_logreport")
    mutants = [(json.loads(dict(r.user_properties)["pv_mutant"]), r.nodeid.split("::")[-1])
               for r in reports if r.when == "call" and "pv_mutant" in dict(r.user_properties)]
    found = sorted((mutant["falsifier"], test, mutant["killed"]) for mutant, test in mutants)
    assert found == [
        ("FT-X-001", "test_kills[mutant=kd-no-t-squared]", True),
        ("FT-X-001", "test_vacuous[mutant=kd-no-t-squared]", False),
        ("FT-X-002", "test_broken[mutant=kd-no-t-squared]", True),
        ("FT-X-002", "test_broken[mutant=kd-reverse-kl]", True),
    ]


def test_bad_bindings_are_collection_errors(pytester: pytest.Pytester) -> None:
    bad = {
        "test_ft_none.py": '@pytest.mark.falsifies("FT-X-001")',
        "test_ft_unknown.py": '@pytest.mark.falsifies("FT-X-001", mutants=["no-such-mutant"])',
        "test_ft_undeclared.py": '@pytest.mark.falsifies("FT-X-999", mutants=["kd-no-t-squared"])',
    }
    _project(pytester.path, {name: f"import pytest\n\n\n{marker}\ndef test_x():\n    pass\n"
                             for name, marker in bad.items()})
    result = pytester.runpytest("falsifiers", "-p", "no:cacheprovider", "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines_random([
        "*test_ft_none.py::test_x: falsifier FT-X-001 names no mutant*",
        "*test_ft_unknown.py::test_x: falsifier FT-X-001 names unknown mutants [[]'no-such-mutant'[]]*",
        "*test_ft_undeclared.py::test_x: FT-X-999 is not a falsification_tests id of any contract*",
    ])


@pytest.mark.slow
def test_pv_vacuity_command_with_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    two_falsifiers = FALSIFIERS.split("\n\n\n@pytest.mark.falsifies(\"FT-X-002\"")[0]
    monkeypatch.chdir(_project(tmp_path, {"test_ft_x.py": two_falsifiers}))
    code = cli.main(["vacuity", "falsifiers", "-m", "not gpu", "-n", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    assert {tuple(line.split()[:4]) for line in out.splitlines()[2:-1]} == {
        row for row in EXPECTED_ROWS if row[0] == "FT-X-001"}
    assert "mutant kd-no-t-squared survived (the falsifier passed with the mutant applied)" in err


def test_a_crash_under_a_mutant_is_not_a_kill(pytester: pytest.Pytester) -> None:
    crashing = '''\
import pytest
import torch

from distill import kd

S, T = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, 1.0, 3.0]])


@pytest.mark.falsifies("FT-X-001", mutants=["kd-no-t-squared"])
def test_crashes_when_mutated():
    if kd.kd_loss(S, T, 2.0).item() < 1.0:  # only under the mutant (1.47 with T^2, 0.37 without)
        raise KeyError("a crash, not a failed check")
'''
    _project(pytester.path, {"test_ft_crash.py": crashing})
    log = pytester.path / "vacuity.json"
    result = pytester.runpytest("falsifiers", "--pv-vacuity", f"--pv-vacuity-log={log}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)  # unmutated passes; the mutant run is no kill
    result.stdout.fnmatch_lines(["*not a kill: the test crashed (KeyError*"])
    # pv vacuity calls it crashed, with the exception, not survived
    runs = [ItemRun(**run) for run in json.loads(log.read_text())["runs"]]
    [row] = result_from_runs(runs).rows
    assert (row.status, row.mutant) == (MutantStatus.CRASHED, "kd-no-t-squared")
    assert next(run for run in runs if run.mutant).crashed == "KeyError: 'a crash, not a failed check'"
    assert "crashed" in format_table(result_from_runs(runs)).splitlines()[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pv_vacuity_shows_progress_of_the_test_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    two_falsifiers = FALSIFIERS.split("\n\n\n@pytest.mark.falsifies(\"FT-X-002\"")[0]
    monkeypatch.chdir(_project(tmp_path, {"test_ft_x.py": two_falsifiers}))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["vacuity", "falsifiers", "-m", "not gpu"]) == 1  # test_vacuous survives
    shown = terminal.getvalue()
    assert "pv vacuity: test runs [" in shown and "4/4" in shown  # two tests, unmutated and one mutant each
    assert "FT-X-001" in capsys.readouterr().out


#: test_first's mutant run is the first to import distill.train, which binds distill.schedule's learning_rate
#: by name (``from distill.schedule import learning_rate``): the mutant's, unless the plugin drops the module
LAZY = '''\
import pytest

from distill import schedule


@pytest.mark.falsifies("FT-X-001", mutants=["lr-warmup-from-zero"])
def test_first():
    if schedule.learning_rate(0, 1.0, "constant", 2, 4) == 0.0:
        import distill.train  # noqa: F401  (first imported under the mutant)
    assert schedule.learning_rate(0, 1.0, "constant", 2, 4) == 0.5


@pytest.mark.falsifies("FT-X-001", mutants=["lr-warmup-from-zero"])
def test_second():
    from distill import train
    assert train.learning_rate(0, 1.0, "constant", 2, 4) == 0.5
'''


def test_a_module_first_imported_under_a_mutant_does_not_keep_it(pytester: pytest.Pytester) -> None:
    """Without dropping it, distill.train keeps the mutated learning_rate and test_second fails unmutated."""
    _project(pytester.path, {"test_ft_lazy.py": LAZY})
    log = pytester.path / "vacuity.json"
    result = pytester.runpytest_subprocess("falsifiers", "--pv-vacuity", f"--pv-vacuity-log={log}", "-p",
                                           "no:cacheprovider", "-p", "no:randomly", "-v")
    outcomes = {line.split(" ")[0].split("::")[-1]: line.split(" ")[1] for line in result.outlines
                if "::" in line and (" PASSED" in line or " FAILED" in line)}
    assert outcomes == {"test_first[unmutated]": "PASSED", "test_first[mutant=lr-warmup-from-zero]": "PASSED",
                        "test_second[unmutated]": "PASSED", "test_second[mutant=lr-warmup-from-zero]": "PASSED"}, \
        "\n".join(result.outlines[-30:])

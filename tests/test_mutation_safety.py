"""pv mutate defends the machine and the user's files: a memory limit per mutant, temporary folders
removed when it is stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mutation_projects import CALC, WEAK_TESTS, plant
from pv.mutation.results import ERROR, KILLED, TIMEOUT
from pv.mutation.run import run_mutation

#: the forced else-branch asks for 2 GiB (bytes() maps it lazily: without a limit it costs nothing)
GREEDY = '''\
def buffer_size(small):
    return 1024 if small else 2 ** 31
'''
GREEDY_TESTS = '''\
from greedy import buffer_size


def test_small_buffer():
    assert len(bytes(buffer_size(True))) == 1024
'''


def test_a_mutant_past_its_memory_limit_is_an_error_not_a_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(tmp_path, {"greedy.py": GREEDY, "test_greedy.py": GREEDY_TESTS}, monkeypatch)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    earlier = tmp_path / "earlier.json"
    for run in ("first", "incremental"):  # an error is the machine's, not the code's: a re-run tries it again
        report = run_mutation(["test_greedy.py"], {"greedy:buffer_size"}, tmp_path, workers=1,
                              memory_fraction=(256 << 20) / total, previous=earlier)  # 256 MiB a mutant
        by_change = {m.site.change: m for m in report.mutants}
        greedy = by_change["1024 if small else 2 ** 31 -> 2 ** 31"]
        assert (greedy.status, greedy.killed_by, greedy.reused) == (ERROR, None, False)
        assert greedy.detail.startswith("memory: ")
        ordinary = by_change["1024 -> 1025"]  # an ordinary mutant under the same limit
        assert (ordinary.status, ordinary.reused) == (KILLED, run == "incremental")
        earlier.write_text(json.dumps(report.to_json()))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_pv_mutate_and_its_temporary_folders_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              signum: int) -> None:
    project = tmp_path / "project"
    project.mkdir()
    plant(project, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, monkeypatch)
    (project / "contracts").mkdir()
    (project / "contracts" / "calc.yaml").write_text("equations:\n  count_up:\n    implementation: calc:count_up\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pv", "mutate", "test_calc.py", "-j", "1"], cwd=project,
                            env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(6000):  # until the mutants run (the cache folder and a worker's folder exist)
            names = [path.name for path in scratch.iterdir()]
            if any(n.startswith("pv-mutate-cache-") for n in names) and any(n.startswith("pv-mutant-") for n in names):
                break
            if proc.poll() is not None:
                pytest.fail(f"pv mutate ended before it was stopped: {proc.stderr.read()}")
            time.sleep(0.01)
        else:
            pytest.fail("pv mutate never started its mutants")
        proc.send_signal(signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in proc.stderr.read()
    assert sorted(path.name for path in scratch.iterdir() if path.name.startswith("pv-")) == []


def test_a_mutant_that_hangs_in_a_fast_test_stops_at_that_tests_own_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endless loop hangs in the fast test (run first): its limit comes from that test's own
    duration, not from the sum with a slow test that would run after it."""
    slow = WEAK_TESTS + "\n\ndef test_count_slowly():\n    import time\n    time.sleep(2)\n    assert count_up(2) == 2\n"
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": slow}, monkeypatch)
    report = run_mutation(["test_calc.py"], {"calc:count_up"}, tmp_path, workers=2, timeout_scale=1.0,
                          timeout_slack=1.0)
    endless = next(m for m in report.mutants if m.site.change == "i += 1 -> i -= 1")
    assert endless.status == TIMEOUT and endless.tests == ["test_calc.py::test_count", "test_calc.py::test_count_slowly"]
    prefix = "test_calc.py::test_count ran past its own limit of "
    assert endless.detail.startswith(prefix)
    assert float(endless.detail.removeprefix(prefix).removesuffix(" s")) < 2.0  # the slow test alone sleeps 2 s


ORDER_TESTS = '''\
from calc import clamp


def test_runs_as_in_the_first_run(request):
    assert not request.config.pluginmanager.has_plugin("randomly")  # no shuffled order, no reseeding


def test_below():
    assert clamp(-3, 0, 10) == 0
'''


def test_mutants_run_their_tests_as_the_first_run_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill never comes from a plugin that reorders or reseeds the tests in a mutant's run only."""
    pytest.importorskip("pytest_randomly", reason="the plugin whose order and seeds a mutant run must not get")
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": ORDER_TESTS}, monkeypatch)
    report = run_mutation(["test_calc.py"], {"calc:clamp"}, tmp_path,
                          workers=1, live=False)
    assert report.baseline.passed() == ["test_calc.py::test_runs_as_in_the_first_run", "test_calc.py::test_below"]
    assert {m.killed_by for m in report.mutants if m.status == KILLED} == {"test_calc.py::test_below"}


BROKEN_AT_IMPORT = '''\
DIVISOR = 1
HALF = 10 // DIVISOR


def half():
    return HALF
'''
BROKEN_TESTS = '''\
from halves import half


def test_half():
    assert half() == 10
'''


def test_a_mutant_that_breaks_collection_is_killed_by_a_test_not_by_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DIVISOR = 0 makes importing the module fail while pytest collects the test file: the killer is the
    test that then fails, as with the mutant written into the file."""
    plant(tmp_path, {"halves.py": BROKEN_AT_IMPORT, "test_halves.py": BROKEN_TESTS}, monkeypatch)
    report = run_mutation(["test_halves.py"], {"halves:DIVISOR"}, tmp_path, workers=1)
    zero = next(m for m in report.mutants if m.site.change == "1 -> 0")
    assert (zero.status, zero.killed_by, zero.kind) == (KILLED, "test_halves.py::test_half", "collection")
    assert "ZeroDivisionError" in zero.detail


GUARD = '''\
class InsufficientMemoryError(Exception):
    """The project's own refusal: an expected outcome, not the machine running out of memory."""


def reserve(wanted, free):
    if wanted > free:
        raise InsufficientMemoryError(f"{wanted} bytes do not fit in {free}")
    return wanted
'''
GUARD_TESTS = '''\
import pytest

from guard import InsufficientMemoryError, reserve


def test_too_much_is_refused():
    with pytest.raises(InsufficientMemoryError):
        reserve(10, 5)
'''


def test_a_projects_own_memory_error_class_is_a_kill_not_a_memory_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that names ``InsufficientMemoryError`` ("DID NOT RAISE ...") is the test killing the mutant."""
    plant(tmp_path, {"guard.py": GUARD, "test_guard.py": GUARD_TESTS}, monkeypatch)
    report = run_mutation(["test_guard.py"], {"guard:reserve"}, tmp_path, workers=1)
    by_change = {m.site.change: m for m in report.mutants}
    removed = by_change["if wanted > free -> if False"]
    assert (removed.status, removed.killed_by) == (KILLED, "test_guard.py::test_too_much_is_refused")
    assert "InsufficientMemoryError" in removed.detail


TMP_USER = '''\
def double(x):
    return 2 * x
'''
TMP_USER_TESTS = '''\
from tmp_user import double


def test_double_through_a_file(tmp_path):
    (tmp_path / "value").write_text(str(double(21)))
    assert (tmp_path / "value").read_text() == "42"
'''


@pytest.mark.parametrize("live", [True, False], ids=["swapped", "imported"])
def test_mutants_leave_no_pytest_temporary_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   live: bool) -> None:
    """Each mutant's tests use tmp_path in a forked child that ends with os._exit: without a folder of its
    own, every mutant left a pytest-N folder in the system's temporary folder (73 GB over three runs of
    distill's core), which pytest's pruning never saw."""
    project, scratch = tmp_path / "project", tmp_path / "tmp"
    project.mkdir()
    scratch.mkdir()
    plant(project, {"tmp_user.py": TMP_USER, "test_tmp_user.py": TMP_USER_TESTS}, monkeypatch)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    report = run_mutation(["test_tmp_user.py"], {"tmp_user:double"}, project, workers=1, live=live)
    assert len(report.mutants) >= 3 and all(m.status == KILLED for m in report.mutants)
    left = sorted(str(p.relative_to(scratch)) for p in scratch.glob("pytest-of-*/pytest-[0-9]*"))
    assert len(left) <= 1, f"{len(left)} pytest folders for {len(report.mutants)} mutants: {left}"  # the first run's

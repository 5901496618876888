"""Mutant workers: processes that run tests against one mutant at a time, each in a forked child.

Started as ``python -m pv.mutation.worker JOBS_FD ANSWERS_FD MODE ...``, a
worker reads one job per line of JSON from ``JOBS_FD`` and answers one line of
JSON on ``ANSWERS_FD``. Each job runs in a forked child, so no mutant outlives
its run; a child still running at its deadline is killed with its process
group. There are two modes:

- ``--session PYTEST_ARG...``: pytest collects the tests once; each child swaps
  the mutated function into the imported code (:mod:`pv.mutation.live`)
  and runs the job's tests in that collected session. The timeout counts from
  the fork. This is the fast path, for every mutant inside a function body.
- ``--preload MODULE...``: the worker imports the named libraries once (never
  the code under mutation); each child installs an import hook that serves the
  mutated module (compiled in memory from the AST, never written to disk) and
  runs pytest afresh. The timeout counts from the end of collection, so a slow
  start is not taken for a hang. This is the path of mutants that run at import.

Both stop at the first failure. Job: ``{"module", "path", "source", "scopes", "site",
"tests", "timeout", "args"}``; answer: ``{"status": "killed" | "survived" |
"timeout" | "error" | "not-applicable", "detail", "test", "kind", "seconds"}``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, TextIO

import pytest

from pv.mutation import live
from pv.mutation.generation import mutated_code, sites


class _MutantLoader(importlib.machinery.SourceFileLoader):
    """Loads one module from a code object compiled from its mutated AST."""

    def __init__(self, fullname: str, path: str, code: CodeType) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> CodeType:
        return self._code


class MutantFinder(importlib.abc.MetaPathFinder):
    """Meta path finder that answers for ``module`` alone, with the mutated code."""

    def __init__(self, module: str, path: str, code: CodeType) -> None:
        self.module, self.path, self.code = module, path, code

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != self.module:
            return None
        loader = _MutantLoader(fullname, self.path, self.code)
        is_package = Path(self.path).name == "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname, self.path, loader=loader,
            submodule_search_locations=[str(Path(self.path).parent)] if is_package else None)


class _FirstFailure:
    """pytest plugin: remembers the first failing test, how it failed and why."""

    def __init__(self) -> None:
        self.test: str | None = None
        self.detail = ""
        self.kind = "error"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        report = yield
        if report.failed and self.test is None and call.excinfo is not None:
            assertion = call.excinfo.errisinstance((AssertionError, pytest.fail.Exception))
            self.kind = "assertion" if assertion else call.excinfo.typename
        return report

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and self.test is None:
            self.test = report.nodeid
            self.detail = _last_line(report.longreprtext) if report.when == "call" else f"{report.when} failed: {_last_line(report.longreprtext)}"

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed and self.test is None:
            self.test = report.nodeid or "<collection>"
            self.detail = f"collection failed: {_last_line(report.longreprtext)}"


class _ImportedMutant(_FirstFailure):
    """:class:`_FirstFailure` that also keeps the mutant's finder first on the import path."""

    def __init__(self, finder: MutantFinder, started_path: str, tests: Sequence[str] = ()) -> None:
        super().__init__()
        self.finder = finder
        self.started_path = started_path
        self.order = {test: index for index, test in enumerate(tests)}

    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(self) -> None:
        """After pytest installed its assertion-rewriting importer, before any conftest imports."""
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        sys.meta_path.insert(0, self.finder)

    def pytest_collection_finish(self) -> None:
        """Tell the waiting parent that the tests start now (their timeout counts from here)."""
        Path(self.started_path).touch()

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if nodeid in self.order:
            mark_test(self.started_path, self.order[nodeid])

    def pytest_collectreport(self, report: Any) -> None:
        """A file (or folder) that no longer collects under the mutant fails each of its tests, as it would
        with the mutant written into the file: the killer is the first of the job's tests in it."""
        if report.failed and self.test is None:
            where = report.nodeid
            inside = [test for test in self.order
                      if not where or test.startswith(where + "::") or test.startswith(where.rstrip("/") + "/")]
            self.test = inside[0] if inside else where or "<collection>"
            self.kind = "collection"
            self.detail = f"collection of {where or 'the tests'} failed: {_last_line(report.longreprtext)}"


def mark_test(started_path: str, index: int) -> None:
    """Tell the waiting parent that test ``index`` of the job starts now (its own time limit counts from here)."""
    with open(started_path + ".test", "w", encoding="ascii") as out:
        out.write(str(index))


def _marked_test(started_path: str) -> int | None:
    try:
        with open(started_path + ".test", encoding="ascii") as marked:
            return int(marked.read())
    except (OSError, ValueError):
        return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith("E ")] or lines
    return wanted[0][:240] if wanted else ""


#: what a failure caused by the memory limit says (Python's, and PyTorch's allocator's); a whole word, so
#: that a project's own exception (``InsufficientMemoryError``, raised as a test expects) is a kill
_OUT_OF_MEMORY = re.compile(r"\bMemoryError\b|can't allocate memory|Cannot allocate memory|std::bad_alloc")


def _outcome(exit_code: int, failure: _FirstFailure) -> dict[str, Any]:
    if exit_code != 0 and _OUT_OF_MEMORY.search(f"{failure.kind} {failure.detail}"):
        return {"status": "error", "reason": "memory",
                "detail": f"memory: the mutant's process ran past its memory limit ({failure.detail})"}
    if exit_code == 0:
        return {"status": "survived", "detail": "every selected test passed"}
    if exit_code in (1, 2, 3, 4):
        return {"status": "killed", "test": failure.test, "kind": failure.kind,
                "detail": failure.detail or f"pytest exit {exit_code}"}
    return {"status": "error", "detail": f"pytest exited {exit_code} (no tests ran)"}


def _import_mutant(job: dict[str, Any], started_path: str) -> dict[str, Any]:
    """In a child of a preloading worker: serve the mutated module through an import hook, run pytest."""
    if job["module"] in sys.modules:
        raise RuntimeError(f"{job['module']} was imported before the mutant could be installed")
    source = job["source"]
    code = mutated_code(source, job["site"], job["scopes"], job["path"])
    failure = _ImportedMutant(MutantFinder(job["module"], job["path"], code), started_path, job["tests"])
    exit_code = int(pytest.main([*job["tests"], "-x", "-q", *job.get("args", [])], plugins=[failure]))
    return _outcome(exit_code, failure)


#: how long pytest may take to start and collect (imports included) before a mutant counts as hanging
STARTUP_TIMEOUT_S = 300.0


def run_forked(child: Callable[[str], dict[str, Any]], timeout: float, startup: bool,
               memory: int | None = None, limits: Sequence[float] = (),
               names: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``child(started_path)`` in a forked process and return the outcome it writes.

    ``limits``: each test's own seconds (``names``: the tests), counted from the moment the child
    marks it started (:func:`mark_test`): a mutant that hangs in a fast test is stopped at that
    test's limit, not at the sum of all of them.
    ``memory``: the bytes the child may add to its address space (``RLIMIT_AS``; None: no limit).

    With ``startup``, the ``timeout`` counts from the moment the child creates ``started_path``
    (pytest finished collecting), within :data:`STARTUP_TIMEOUT_S`; without, from the fork.
    A child still running at its deadline is killed with its process group.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pv-mutant-") as tmp:
        result_path, started_path = os.path.join(tmp, "result.json"), os.path.join(tmp, "started")
        pid = os.fork()
        if pid == 0:
            _child_main(child, result_path, started_path, memory)
        deadline = started + (STARTUP_TIMEOUT_S if startup else timeout)
        tests_started, status, current = not startup, None, None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if not tests_started and os.path.exists(started_path):
                tests_started, deadline = True, time.monotonic() + timeout
            marked = _marked_test(started_path) if limits else None
            if marked is not None and marked != current and 0 <= marked < len(limits):
                current, deadline = marked, time.monotonic() + limits[marked]
            time.sleep(0.01)
        else:
            _kill_group(pid)
            os.waitpid(pid, 0)
            limit = f"its tests ran past {timeout:.0f} s" if tests_started else (
                f"pytest did not start its tests within {STARTUP_TIMEOUT_S:.0f} s")
            if current is not None:
                limit = f"{names[current]} ran past its own limit of {limits[current]:.1f} s"
            return {"status": "timeout", "detail": limit, "seconds": time.monotonic() - started}
        seconds = time.monotonic() - started
        try:
            outcome = json.loads(Path(result_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            code = os.waitstatus_to_exitcode(status) if status is not None else None
            outcome = {"status": "killed", "detail": f"the test process died (exit status {code})"}
        _kill_group(pid)  # anything the tests left running
    outcome["seconds"] = seconds
    return outcome


def _child_main(child: Callable[[str], dict[str, Any]], result_path: str, started_path: str,
                memory: int | None) -> None:
    """In the forked child: own process group, output to /dev/null, a memory limit, pytest's temporary folders
    in the job's own folder (removed with it: a child ends with ``os._exit``, so pytest never prunes the
    ``pytest-N`` folders it would leave in the system's temporary folder, one per mutant), always answer,
    then exit."""
    os.setpgid(0, 0)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = os.path.dirname(result_path)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if memory is not None:
        limit_memory(memory)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        outcome = child(started_path)
    except MemoryError as err:
        outcome = {"status": "error", "reason": "memory", "detail": f"memory: the mutant's process ran past "
                                                                     f"its memory limit ({err})"[:240]}
    except BaseException as err:  # the child must always answer
        outcome = {"status": "error", "detail": f"{type(err).__name__}: {err}"[:240]}
    Path(result_path).write_text(json.dumps(outcome), encoding="utf-8")
    os._exit(0)


def limit_memory(extra: int) -> None:
    """Let this process's address space grow by at most ``extra`` bytes from its present size."""
    import resource

    with open("/proc/self/statm", encoding="ascii") as statm:
        present = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = present + extra
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fork a child that imports the mutant afresh; its tests get ``timeout`` seconds once collected."""
    return run_forked(lambda started: _import_mutant(job, started), float(job["timeout"]), startup=True,
                      memory=job.get("memory"), limits=job.get("limits", ()), names=job["tests"])


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this child when its worker dies (no orphaned test runs)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class SessionServer:
    """pytest plugin of a session worker: once the tests are collected, it runs mutants instead.

    Each job is run in a forked child of the collected session: the mutant is swapped into
    the imported module (:mod:`pv.mutation.live`; a module no test has imported yet is
    imported first), and the job's tests run through pytest's own protocol,
    stopping at the first failure. A mutant that cannot be swapped in is answered
    ``not-applicable`` (the caller runs it in a preloading worker).
    """

    def __init__(self, jobs: TextIO, answers: TextIO) -> None:
        self.jobs, self.answers = jobs, answers
        self.served = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = {item.nodeid: item for item in session.items}
        self.served = True
        _answer(self.answers, {"ready": True, "tests": len(items)})
        for line in self.jobs:
            if line.strip():
                job = json.loads(line)
                _answer(self.answers, run_forked(lambda started: _run_live(job, items, started),
                                                 float(job["timeout"]), startup=False, memory=job.get("memory"),
                                                 limits=job.get("limits", ()), names=job["tests"]))
        return True


def _run_live(job: dict[str, Any], items: dict[str, pytest.Item], started_path: str) -> dict[str, Any]:
    """In a child of a session worker: apply the mutant to the imported code, run the job's tests."""
    source = job["source"]
    importlib.import_module(job["module"])  # a module no test imported yet (loaded on demand) is swapped too
    site = sites(source, job["scopes"], job["path"])[job["site"]]
    try:
        live.apply(job["path"], source, site, job["scopes"])
    except live.NotApplicable as err:
        return {"status": NOT_APPLICABLE, "detail": str(err)}
    selected = [items[test] for test in job["tests"]]
    failure = _FirstFailure()
    selected[0].config.pluginmanager.register(failure, "pv-mutant-first-failure")
    for position, item in enumerate(selected):
        mark_test(started_path, position)
        following = selected[position + 1] if position + 1 < len(selected) else None
        item.ihook.pytest_runtest_protocol(item=item, nextitem=following)
        if failure.test is not None:
            break
    return _outcome(1 if failure.test is not None else 0, failure)


#: the answer of a session worker for a mutant it cannot swap into the imported code
NOT_APPLICABLE = "not-applicable"


def _answer(stream: TextIO, data: dict[str, Any]) -> None:
    stream.write(json.dumps(data) + "\n")
    stream.flush()


def serve_preloaded(jobs: TextIO, answers: TextIO, preload: Sequence[str]) -> None:
    """Import ``preload``, then answer jobs (each imports the mutant afresh) until ``jobs`` closes."""
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a library that cannot be preloaded is imported by the child instead
            pass
    _answer(answers, {"ready": True})
    for line in jobs:
        if line.strip():
            _answer(answers, run_job(json.loads(line)))


def serve_session(jobs: TextIO, answers: TextIO, pytest_args: Sequence[str]) -> None:
    """Collect ``pytest_args`` once, then answer jobs in children of that session until ``jobs`` closes."""
    server = SessionServer(jobs, answers)
    exit_code = pytest.main([*pytest_args, "-q"], plugins=[server])
    if not server.served:
        _answer(answers, {"ready": False, "detail": f"pytest exited {int(exit_code)} before running tests"})


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> None:
    """``JOBS_FD ANSWERS_FD --preload MODULE...`` or ``JOBS_FD ANSWERS_FD --session PYTEST_ARG...``."""
    signal.signal(signal.SIGTERM, _exit_on_signal)  # unwinds: temporary folders are removed
    jobs, answers = os.fdopen(int(argv[0]), "r", encoding="utf-8"), os.fdopen(int(argv[1]), "w", encoding="utf-8")
    if argv[2] == "--session":
        serve_session(jobs, answers, argv[3:])
    else:
        serve_preloaded(jobs, answers, argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])

"""A mutant worker: a process that runs tests against one mutant at a time, forked per mutant.

Started as ``python -m pv.evidence.mutate_worker PRELOAD...``, it imports the
named libraries once (the expensive ones, never the code under mutation), then
reads one job per line of JSON on stdin and answers one line of JSON on stdout.
Each job runs in a forked child, so no mutant outlives its run: the child
installs an import hook that serves the mutated module (compiled in memory
from the AST, never written to disk), runs pytest on the job's tests, stops at
the first failure and reports it. A child still running at the job's timeout
is killed with its process group; the timeout counts from the end of
collection, so a slow start (imports under load) is not taken for a hang.

Job: ``{"module", "path", "scopes", "site", "tests", "timeout", "args"}``; answer:
``{"status": "killed" | "survived" | "timeout" | "error", "detail", "test", "seconds"}``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import pytest

from pv.evidence.mutate_ast import mutated_code


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
    """pytest plugin: keeps the mutant's finder first on the import path; remembers the first failure."""

    def __init__(self, finder: MutantFinder, started_path: str) -> None:
        self.finder = finder
        self.started_path = started_path
        self.test: str | None = None
        self.detail = ""
        self.kind = "error"

    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(self) -> None:
        """After pytest installed its assertion-rewriting importer, before any conftest imports."""
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        sys.meta_path.insert(0, self.finder)

    def pytest_collection_finish(self) -> None:
        """Tell the waiting parent that the tests start now (their timeout counts from here)."""
        Path(self.started_path).touch()

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


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith("E ")] or lines
    return wanted[0][:240] if wanted else ""


def run_in_child(job: dict[str, Any], result_path: str, started_path: str) -> None:
    """In the forked child: install the mutant, run pytest, write the outcome, exit."""
    os.setpgid(0, 0)
    _die_with_parent()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    outcome: dict[str, Any]
    try:
        if job["module"] in sys.modules:
            raise RuntimeError(f"{job['module']} was imported before the mutant could be installed")
        source = Path(job["path"]).read_text(encoding="utf-8")
        code = mutated_code(source, job["site"], job["scopes"], job["path"])
        failure = _FirstFailure(MutantFinder(job["module"], job["path"], code), started_path)
        exit_code = int(pytest.main([*job["tests"], "-x", "-q", *job.get("args", [])],
                                    plugins=[failure]))
        if exit_code == 0:
            outcome = {"status": "survived", "detail": "every selected test passed"}
        elif exit_code in (1, 2, 3, 4):
            outcome = {"status": "killed", "test": failure.test, "kind": failure.kind,
                       "detail": failure.detail or f"pytest exit {exit_code}"}
        else:
            outcome = {"status": "error", "detail": f"pytest exited {exit_code} (no tests ran)"}
    except BaseException as err:  # the child must always answer
        outcome = {"status": "error", "detail": f"{type(err).__name__}: {err}"[:240]}
    Path(result_path).write_text(json.dumps(outcome), encoding="utf-8")
    os._exit(0)


#: how long pytest may take to start and collect (imports included) before a mutant counts as hanging
STARTUP_TIMEOUT_S = 300.0


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fork a child for ``job`` and return its outcome; its tests get ``timeout`` seconds once collected."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pv-mutant-") as tmp:
        result_path, started_path = os.path.join(tmp, "result.json"), os.path.join(tmp, "started")
        pid = os.fork()
        if pid == 0:
            run_in_child(job, result_path, started_path)
        deadline, tests_started = started + STARTUP_TIMEOUT_S, False
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if not tests_started and os.path.exists(started_path):
                tests_started, deadline = True, time.monotonic() + float(job["timeout"])
            time.sleep(0.02)
        else:
            _kill_group(pid)
            os.waitpid(pid, 0)
            limit = f"its tests ran past {job['timeout']:.0f} s" if tests_started else (
                f"pytest did not start its tests within {STARTUP_TIMEOUT_S:.0f} s")
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


def serve(preload: Sequence[str]) -> None:
    """Import ``preload``, then answer jobs from stdin until it closes."""
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a library that cannot be preloaded is imported by the child instead
            pass
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_job(json.loads(line))), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1:])

"""pytest plugin of ``pv mutate``'s first run: which test executes which line of the mutated files.

Loaded with ``-p pv.mutation.tracing`` and configured by two
environment variables: ``PV_MUTATE_FILES`` (a JSON list of the source files
that will be mutated) and ``PV_MUTATE_COVERAGE`` (a folder: each process that
runs tests, pytest-xdist's workers included, writes ``<pid>.json`` there;
:func:`merged` joins them). A line tracer (``sys.settrace``, only for frames of those files) records the
lines each test runs, setup and teardown included. The result, as JSON::

    {"tests": {nodeid: {"outcome", "seconds", "lines": {path: [line...]}, "covers": [...], "binds": [path...]}},
     "preload": [top-level library modules the run imported],
     "files": [every test file collected and conftest.py loaded],
     "modules": [the source file of every module imported from the rootdir]}

A process forked while a test runs (the ranks of a data-parallel run, a run
killed on purpose) keeps tracing: it writes what it ran to
``children/<pid>.json`` when it ends through ``os._exit`` (as coverage.py's
``patch = fork, _exit`` does), and those lines count for the test that forked
it. A child killed by a signal, and a new interpreter (a subprocess), are not
traced.

``covers`` lists the scopes a falsifier declares it checks, from the
``covers=[...]`` argument of its ``falsifies`` marks (``module`` or
``module:qualname``); ``binds`` the files of the modules a test binds without
running their lines (an item's ``pv_binds``: a contract check reading constants), whose
import-time code it reaches all the same; ``preload`` names what a mutant worker may import once
before forking (every module the run imported from outside the project).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pv._util.modules import project_source

FILES_ENV, OUT_ENV = "PV_MUTATE_FILES", "PV_MUTATE_COVERAGE"
#: the subfolder of the coverage folder where forked children write the lines they ran
CHILDREN = "children"
#: the interpreter's own ``os._exit`` (a forked child replaces it with one that first writes its lines)
_EXIT = os._exit
#: the item attribute naming the modules a test binds without running their lines (a contract check that
#: reads a module's constants): their import-time code counts as reached by it
BINDS_ATTRIBUTE = "pv_binds"
#: the marker whose ``covers=`` argument declares a falsifier's scope
COVERS_MARKER = "falsifies"


class LineTracer:
    """Records ``(file, line)`` for frames of the watched files only."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.lines: dict[str, set[int]] = {}
        self._watched: dict[Any, bool] = {}

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        watched = self._watched.get(code)
        if watched is None:
            watched = self._watched[code] = code.co_filename in self.files
        if not watched:
            return None
        self.lines.setdefault(code.co_filename, set()).add(frame.f_lineno)
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.lines[frame.f_code.co_filename].add(frame.f_lineno)
        return self._local

    def start(self) -> None:
        self.lines = {}
        sys.settrace(self._global)
        threading.settrace(self._global)

    def stop(self) -> dict[str, list[int]]:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        return {path: sorted(lines) for path, lines in self.lines.items()}


class CoverageRecorder:
    """The plugin: one tracer run per test item, outcomes and durations from the reports."""

    def __init__(self, files: set[str], out: Path) -> None:
        self.tracer = LineTracer(files)
        self.out = out
        self.tests: dict[str, dict[str, Any]] = {}
        self.files: set[str] = set()
        #: the test running now (None between tests): a process forked meanwhile reports its lines for it
        self.running: str | None = None
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """In a child forked during a test: write the lines it ran when it ends through ``os._exit`` (as forked
        ranks and multiprocessing's forked processes do)."""
        test = self.running
        if test is None:
            return
        tracer, folder = self.tracer, self.out / CHILDREN

        def write() -> None:  # named by the process that ends (a grandchild inherits its parent's hook)
            path = folder / f"{os.getpid()}.json"
            folder.mkdir(exist_ok=True)
            lines = {name: sorted(found) for name, found in tracer.lines.items()}
            path.write_text(json.dumps({"test": test, "lines": lines}), encoding="utf-8")

        def exit_written(code: int) -> None:
            try:
                write()
            finally:
                _EXIT(code)

        os._exit = exit_written  # type: ignore[assignment]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.files.update(str(item.path) for item in session.items)
        for plugin in session.config.pluginmanager.get_plugins():
            origin = getattr(plugin, "__file__", None)
            if origin and Path(origin).name == "conftest.py":
                self.files.add(str(Path(origin).resolve()))
        for item in session.items:
            self.tests[item.nodeid] = {"outcome": "not run", "seconds": 0.0, "covers": _covers(item), "lines": {}}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        entry = self.tests.setdefault(item.nodeid, {"covers": _covers(item)})
        entry["outcome"] = "passed"
        started = time.perf_counter()
        self.running = item.nodeid
        self.tracer.start()
        try:
            return (yield)
        finally:
            self.running = None
            entry["lines"] = self.tracer.stop()
            entry["seconds"] = time.perf_counter() - started
            entry["binds"] = _module_files(getattr(item, BINDS_ATTRIBUTE, ()))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.get(report.nodeid)
        if entry is None:
            return
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        data = {"tests": self.tests, "preload": _library_modules(), "files": sorted(self.files),
                "modules": sorted(_project_modules(session.config.rootpath))}
        (self.out / f"{os.getpid()}.json").write_text(json.dumps(data), encoding="utf-8")


def merged(folder: Path) -> dict[str, Any] | None:
    """The results of every process that wrote into ``folder`` (None when none did)."""
    parts = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]
    if not parts:
        return None
    tests: dict[str, dict[str, Any]] = {}
    for part in parts:  # a process that only collected, or only reported, has "not run" entries
        for nodeid, entry in part["tests"].items():
            if nodeid not in tests or tests[nodeid]["outcome"] == "not run":
                tests[nodeid] = entry
    for path in sorted((folder / CHILDREN).glob("*.json")):
        child = json.loads(path.read_text(encoding="utf-8"))
        entry = tests.get(child["test"])
        if entry is not None:
            lines = entry.setdefault("lines", {})
            for name, found in child["lines"].items():
                lines[name] = sorted(set(lines.get(name, ())) | set(found))
    return {"tests": tests, "preload": sorted({name for part in parts for name in part["preload"]}),
            "files": sorted({name for part in parts for name in part.get("files", [])}),
            "modules": sorted({name for part in parts for name in part.get("modules", [])})}


def _module_files(modules: Any) -> list[str]:
    """The files of the named modules that are loaded (a check binds them: they were imported to run it)."""
    files = []
    for name in modules:
        origin = getattr(sys.modules.get(str(name)), "__file__", None)
        if origin:
            files.append(str(origin))  # as the tracer names it (the code's co_filename)
    return sorted(files)


def _covers(item: pytest.Item) -> list[str]:
    found: list[str] = []
    for mark in item.iter_markers(COVERS_MARKER):
        found.extend(str(scope) for scope in mark.kwargs.get("covers", ()))
    return found


def _project_modules(root: Path) -> set[str]:
    """The source files of the modules imported from the project folder (test helpers, the code under test)."""
    root = root.resolve()
    return {str(path) for module in list(sys.modules.values()) if (path := project_source(module, root))}


def _library_modules() -> list[str]:
    """Top-level modules the run imported from the standard library or installed packages."""
    places = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    found = set()
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if "." in name or name.startswith("__") or origin is None:
            continue
        if any(place in Path(origin).resolve().parents for place in places):
            found.add(name)
    return sorted(found)


def pytest_configure(config: pytest.Config) -> None:
    files, out = os.environ.get(FILES_ENV), os.environ.get(OUT_ENV)
    if files and out:
        recorder = CoverageRecorder(set(json.loads(files)), Path(out))
        config.pluginmanager.register(recorder, "pv-mutate-coverage")

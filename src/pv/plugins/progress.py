"""pytest plugin, loaded only on request (``-p pv.plugins.progress --pv-progress-file=PATH``):
the count of finished items and the total collected, for a parent process's progress bar.

The file (:func:`pv._util.progress.write_counts`) holds ``done total`` and is replaced
whole on each change. Under xdist only the controller keeps it: it counts the items its
workers finish, and the total is one worker's collection (every worker collects them all).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pv._util.progress import write_counts


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("pv-progress", "progress for a parent process").addoption(
        "--pv-progress-file", metavar="PATH", help="keep 'done total' of the run's items in PATH")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("pv_progress_file", None)
    if path and not hasattr(config, "workerinput"):  # on the controller only
        config.pluginmanager.register(ProgressFile(Path(path)), "pv-progress-file")


class ProgressFile:
    """Counts finished items and writes them with the total to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = 0
        self.total = 0

    def _write(self) -> None:
        write_counts(self.path, self.done, self.total)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.total = len(session.items)
            self._write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        if not self.total:
            self.total = len(ids)
            self._write()

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        self.done += 1
        self._write()

"""Clean-room runs: the project exported from git into a fresh folder, so only what git holds can run.

A clean working tree is exported from its commit (``git archive``); a dirty one
(changed tracked files, or untracked files git does not ignore) is copied as git
lists it, and the run says ``dirty``. Either way nothing ignored (a stale
``__pycache__/*.pyc``, a build folder, a virtual environment) and nothing outside
git's view reaches the run. The run's Python writes no bytecode and reads its
compiled files from a private cache (:func:`python_environment`). An untracked
file is a change only when it is an input of the run (its :class:`InputRule`
selects it): another run's reports, or notes beside the code, are not, so two
runs at once never see each other's output as a change.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from pv.attest.inputs import InputError, InputRule, git_top, run_git

#: the environment variable through which a clean-room run learns where it comes from
CLEANROOM_ENV = "PV_CLEANROOM"
#: the environment variable naming the checkout a clean room was exported from, for data a project keeps
#: beside its checkout (test data that is no input of the run: it is not in git)
CHECKOUT_ENV = "PV_CHECKOUT"


@dataclass(frozen=True)
class Source:
    """The git state a clean-room run was exported from (information for the evidence)."""

    commit: str | None
    tree: str | None
    dirty: bool | None
    cleanroom: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CleanRoom:
    """An exported project: ``project`` is the project folder inside the export."""

    project: Path
    pycache: Path
    source: Source
    #: the project folder of the checkout it was exported from
    checkout: Path


def changes(top: Path, project: Path, rule: InputRule) -> list[str]:
    """The changes of the working tree at ``top`` (``git status --porcelain`` entries) that can reach a
    run of the project at ``project``: every change of a tracked file, and untracked files ``rule`` selects."""
    status = run_git(["status", "--porcelain", "-z", "--untracked-files=all"], top).decode("utf-8", "surrogateescape")
    found = []
    for entry in filter(None, status.split("\0")):
        if entry.startswith("?? "):
            path = (top / entry[3:]).resolve()
            if project not in path.parents or not rule.matches(PurePosixPath(path.relative_to(project)).as_posix()):
                continue
        found.append(entry)
    return found


def git_source(project: Path, rule: InputRule) -> Source:
    """The commit, tree and dirtiness of the checkout holding ``project`` (all None outside git)."""
    top = git_top(project)
    if top is None:
        return Source(None, None, None, cleanroom=False)
    try:
        commit = run_git(["rev-parse", "HEAD"], top).decode().strip()
        tree = run_git(["rev-parse", "HEAD^{tree}"], top).decode().strip()
    except InputError:  # a repository without a commit yet
        return Source(None, None, True, cleanroom=False)
    return Source(commit, tree, bool(changes(top, project.resolve(), rule)), cleanroom=False)


def _extract(archive: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def _copy_listed(top: Path, prefix: str, into: Path) -> None:
    listed = run_git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--full-name", "--", prefix or "."],
                  top).decode("utf-8", "surrogateescape")
    for name in filter(None, listed.split("\0")):
        source = top / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


@contextmanager
def clean_room(project: Path, rule: InputRule) -> Iterator[CleanRoom]:
    """Export the project at ``project`` (whose run's inputs ``rule`` selects) into a temporary folder,
    removed on exit.

    Outside git there is nothing to export from: the project folder itself is
    used, and the run can never serve a release (``cleanroom`` false).
    """
    project = project.resolve()
    source = git_source(project, rule)
    top = git_top(project)
    with tempfile.TemporaryDirectory(prefix="pv-cleanroom-") as temp:
        base = Path(temp)
        pycache = base / "pycache"
        pycache.mkdir()
        if top is None or source.commit is None:
            yield CleanRoom(project, pycache, source, project)
            return
        prefix = PurePosixPath(project.relative_to(top.resolve())).as_posix()
        prefix = "" if prefix == "." else prefix
        export = base / "export"
        export.mkdir()
        if source.dirty:
            _copy_listed(top, prefix, export)
        else:
            _extract(run_git(["archive", "--format=tar", "HEAD", "--", prefix or "."], top), export)
        room = export / prefix if prefix else export
        room.mkdir(parents=True, exist_ok=True)
        yield CleanRoom(room, pycache, Source(source.commit, source.tree, source.dirty, cleanroom=True), project)


def python_environment(room: CleanRoom, base: dict[str, str]) -> dict[str, str]:
    """``base`` for a Python run in ``room``: no bytecode written, compiled files from a private cache,
    the run's git source in :data:`CLEANROOM_ENV` and the checkout in :data:`CHECKOUT_ENV`."""
    return {**base, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(room.pycache),
            CLEANROOM_ENV: json.dumps(room.source.to_json()), CHECKOUT_ENV: str(room.checkout)}

"""The inputs of evidence: every file that can change a verdict, by sha256, read from a folder or a git commit.

An :class:`InputRule` says which files of a project are inputs: named files
(``pyproject.toml``, pytest's configuration files, an equivalents file), every
file below some folders (contracts, profiles, falsifiers, the source packages of
``[tool.pv] modules``; compiled files excepted) and every ``conftest.py``. A run
records the digests of the files its rule selects, plus the files it collected
beyond them; a gate recomputes them from the commit being released
(:class:`CommitTree`) or from a folder (:class:`FolderTree`) and names every file
that differs, is missing, or was never recorded (:func:`differences`).
Paths are POSIX paths relative to the project folder; a path outside it is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pv._util.errors import UserError
from pv._util.files import sha256_of

#: files that are inputs wherever the rule is: pytest's configuration, and every conftest
CONFIG_FILES = ("pyproject.toml", "pytest.ini", "tox.ini", "setup.cfg")
CONFTEST = "conftest.py"
#: parts of a path that never hold inputs (caches, compiled files, version control)
_SKIPPED_PARTS = frozenset({"__pycache__", ".git", ".hypothesis", ".pytest_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
#: seconds a git command may take
_GIT_TIMEOUT_S = 120


class InputError(UserError):
    """An input that cannot be one (outside the project), or a tree that cannot be read."""


def relative_input(path: Path, root: Path, what: str) -> str:
    """``path`` (absolute, or relative to ``root``) as a POSIX path relative to ``root``; InputError when it
    lies outside the project."""
    try:
        return PurePosixPath((root / path).resolve().relative_to(root.resolve())).as_posix()
    except ValueError:
        raise InputError(f"{what}: {path} lies outside the project {root}; a file outside the project "
                         "cannot be an input to evidence") from None


@dataclass(frozen=True)
class InputRule:
    """Which files of a project are inputs of its evidence."""

    folders: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        """Whether the project file ``path`` (POSIX, relative) is an input."""
        parts = PurePosixPath(path).parts
        if _SKIPPED_PARTS.intersection(parts) or path.endswith(_SKIPPED_SUFFIXES):
            return False
        if path in self.files or path in CONFIG_FILES or parts[-1] == CONFTEST:
            return True
        return any(folder == "." or path.startswith(folder.rstrip("/") + "/") for folder in self.folders)

    def to_json(self) -> dict[str, Any]:
        return {"folders": sorted(self.folders), "files": sorted(self.files)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "InputRule":
        return cls(tuple(data["folders"]), tuple(data["files"]))

    @classmethod
    def of(cls, root: Path, folders: Iterable[Path] = (), files: Iterable[Path] = (), what: str = "input") -> "InputRule":
        """A rule from absolute ``folders`` and ``files`` of the project at ``root`` (InputError outside it)."""
        return cls(tuple(sorted({relative_input(f, root, what) for f in folders})),
                   tuple(sorted({relative_input(f, root, what) for f in files})))


class Tree(Protocol):
    """Where the digests of a project's files come from."""

    def paths(self) -> list[str]:
        """Every file of the project (POSIX, relative)."""

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        """The sha256 of each of ``paths`` (None: no such file)."""

    def describe(self) -> str:
        """What the tree is, for messages."""


def run_git(args: list[str], cwd: Path, *, data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, timeout=_GIT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError) as err:
        raise InputError(f"git {' '.join(args[:2])} in {cwd}: {err}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"git {' '.join(args[:2])} in {cwd}: {message[-1] if message else 'failed'}")
    return done.stdout


def git_top(folder: Path) -> Path | None:
    """The top of the git working tree holding ``folder``, or None outside git."""
    try:
        return Path(run_git(["rev-parse", "--show-toplevel"], folder).decode().strip())
    except InputError:
        return None


@dataclass
class FolderTree:
    """The files of a folder: those git shows (tracked and untracked, ignored ones left out) in a
    git working tree, every file otherwise (caches and virtual environments skipped)."""

    root: Path

    def paths(self) -> list[str]:
        if git_top(self.root) is not None:
            listed = run_git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."], self.root)
            return sorted({p for p in listed.decode("utf-8", "surrogateescape").split("\0")
                           if p and (self.root / p).is_file()})
        found = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in _SKIPPED_PARTS and not (Path(folder) / d / "pyvenv.cfg").exists()
                       and not (Path(folder) / d).is_symlink()]
            found += [PurePosixPath(Path(folder, f).relative_to(self.root)).as_posix() for f in files]
        return sorted(found)

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        return {path: sha256_of(self.root / path) for path in paths}

    def describe(self) -> str:
        return f"the files in {self.root}"


@dataclass
class CommitTree:
    """The files of a git commit, read from git's objects (never from the working tree)."""

    root: Path
    commit: str
    _prefix: str = field(init=False, default="")

    def __post_init__(self) -> None:
        top = git_top(self.root)
        if top is None:
            raise InputError(f"{self.root}: not in a git repository, so no commit can be read")
        prefix = PurePosixPath(self.root.resolve().relative_to(top.resolve())).as_posix()
        self._prefix = "" if prefix == "." else prefix + "/"
        self.commit = run_git(["rev-parse", "--verify", "--quiet", f"{self.commit}^{{commit}}"], self.root).decode().strip()

    def paths(self) -> list[str]:
        listed = run_git(["ls-tree", "-r", "-z", "--full-tree", "--name-only", self.commit], self.root)
        names = listed.decode("utf-8", "surrogateescape").split("\0")
        return sorted(n[len(self._prefix):] for n in names if n and n.startswith(self._prefix))

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        wanted = list(paths)
        if not wanted:
            return {}
        request = "".join(f"{self.commit}:{self._prefix}{p}\n" for p in wanted).encode("utf-8", "surrogateescape")
        out = run_git(["cat-file", "--batch"], self.root, data=request)
        found: dict[str, str | None] = {}
        at = 0
        for path in wanted:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            at = end + 1
            if len(header) != 3 or header[1] != b"blob":
                found[path] = None
                continue
            size = int(header[2])
            found[path] = hashlib.sha256(out[at:at + size]).hexdigest()
            at += size + 1
        return found

    def describe(self) -> str:
        return f"commit {self.commit[:12]}"


def rule_digests(tree: Tree, rule: InputRule, extra: Iterable[str] = ()) -> dict[str, str]:
    """The digests of every file of ``tree`` that ``rule`` selects, and of ``extra`` files (which must exist)."""
    paths = sorted({p for p in tree.paths() if rule.matches(p)} | set(extra))
    return {path: digest for path, digest in tree.digests(paths).items() if digest is not None}


def differences(recorded: Mapping[str, str], tree: Tree, rule: InputRule, limit: int = 8) -> list[str]:
    """How the inputs ``recorded`` by a run differ from ``tree`` under ``rule`` (empty: the same inputs).

    A recorded file that ``tree`` has with other bytes or lacks, and a file that
    ``rule`` selects in ``tree`` but the run never recorded, are each one line;
    at most ``limit`` lines, then a count of the rest.
    """
    extra = [p for p in recorded if not rule.matches(p)]
    actual = rule_digests(tree, rule)
    actual.update({p: d for p, d in tree.digests(extra).items() if d is not None})
    found = []
    for path in sorted(set(recorded) | set(actual)):
        if path not in actual:
            found.append(f"{path} is not in {tree.describe()}")
        elif path not in recorded:
            found.append(f"{path} was not an input of the run")
        elif actual[path] != recorded[path]:
            found.append(f"{path} differs")
    if len(found) > limit:
        found = found[:limit] + [f"and {len(found) - limit} more"]
    return found

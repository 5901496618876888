"""The files a run's result depends on, by digest: what a later reader compares to tell whether it still holds.

A run of ``pv mutate`` depends on the mutated sources, every test file and
``conftest.py`` that its tests were collected from and every module of the
project they imported (test helpers, the rest of the code under test), the
contracts, the equivalents file and the project's configuration
(``pyproject.toml``, ``pytest.ini``). Each is named by its POSIX path relative to the project root;
a file outside the root cannot be named so and is refused as an input.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pv._util.errors import UserError
from pv._util.files import sha256_of

#: the project's configuration files that change what a test run does, where they exist
CONFIG_FILES = ("pyproject.toml", "pytest.ini")


def relative_input(path: Path, root: Path, what: str) -> str:
    """``path`` as a POSIX path relative to ``root``; a :class:`UserError` naming it when it lies outside."""
    resolved = (root / path).resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UserError(f"{path}: the {what} is outside the project root {root}: "
                        "evidence may only depend on files of the project") from None


def digests(files: Iterable[tuple[Path, str]], root: Path) -> dict[str, str | None]:
    """``{relative path: sha256}`` of ``(path, what it is)`` pairs, sorted; None for a file that does not exist."""
    found = {relative_input(path, root, what): path for path, what in files}
    return {name: sha256_of(root / name) for name in sorted(found)}


def run_inputs(root: Path, sources: Iterable[Path], tests: Iterable[Path], contracts: Path | None,
               equivalents: Path | None, modules: Iterable[Path] = ()) -> dict[str, str | None]:
    """Every input of a run: sources, test files and conftests, the project's imported modules (those below
    ``root``; others are not the project's), contracts, equivalents, configuration."""
    files = [(path, "mutated source") for path in sources]
    files += [(path, "test file") for path in tests]
    files += [(path, "imported module") for path in modules if root.resolve() in path.resolve().parents]
    if contracts is not None and (root / contracts).is_dir():
        files += [(path, "contract") for path in sorted((root / contracts).glob("*.yaml"))]
    if equivalents is not None:
        files.append((equivalents, "equivalents file"))
    files += [(root / name, "configuration") for name in CONFIG_FILES if (root / name).is_file()]
    return digests(files, root)


def changed_inputs(before: dict[str, str | None], root: Path) -> list[str]:
    """The inputs whose bytes now differ from ``before`` (or that appeared or went away)."""
    return [name for name, digest in sorted(before.items()) if sha256_of(root / name) != digest]

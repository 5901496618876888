"""The files a run's result depends on, by digest: what a later reader compares to tell whether it still holds.

A run of ``pv mutate`` depends on the mutated sources, every test file it
collected and every module of the project its tests imported (test helpers,
the rest of the code under test), every ``conftest.py``, the contracts, the
equivalents file and the project's configuration (``pyproject.toml``,
``pytest.ini``, ...). They are selected by an :class:`~pv.attest.inputs.InputRule`,
the same kind of rule a gate report records, so a gate binds mutation evidence to
a tree exactly as it binds a test run; a file outside the project is refused as an input.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pv._util.files import sha256_of
from pv.attest.inputs import FolderTree, InputRule, rule_digests


def run_inputs(root: Path, sources: Iterable[Path], tests: Iterable[Path], contracts: Path | None,
               equivalents: Path | None, modules: Iterable[Path] = ()) -> tuple[InputRule, dict[str, str]]:
    """The rule of a run's inputs and their digests: sources, test files, the project's imported modules
    (those below ``root``; others are not the project's), contracts, equivalents, configuration and every
    conftest (InputError for another file outside the project)."""
    own = [path for path in modules if root.resolve() in Path(path).resolve().parents]
    folders = [root / contracts] if contracts is not None and (root / contracts).is_dir() else []
    files = [root / path for path in (*sources, *tests, *own, *([equivalents] if equivalents is not None else []))]
    rule = InputRule.of(root, folders, files, what="an input of pv mutate")
    return rule, rule_digests(FolderTree(root), rule)


def changed_inputs(before: dict[str, str], root: Path) -> list[str]:
    """The inputs whose bytes now differ from ``before`` (or that went away)."""
    return [name for name, digest in sorted(before.items()) if sha256_of(root / name) != digest]

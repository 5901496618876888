"""What a test run's verdicts rest on: its input files by digest, and the git source it ran from.

The ``inputs`` section of a gate report records, by sha256, every file of the
project that can change a verdict: ``pyproject.toml`` and pytest's other
configuration files, every ``conftest.py``, the contracts, the profile folders,
the falsifiers, every file of the source packages of ``[tool.pv] modules`` (where
the run imported them from), and every test file the run collected beyond those.
A module imported from outside the project, or a collected file outside it, is
listed under ``outside``: such a run is no evidence for a release.

A run is a clean-room run when ``pv verify`` exported the project for it
(``pv.attest.cleanroom``) and this Python neither writes bytecode nor reads it
from the tree: the ``git`` facts then come from the export; otherwise from the
checkout the run is in, with ``cleanroom`` false.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pv._util.config import Config
from pv.attest.cleanroom import CLEANROOM_ENV, Source, git_source
from pv.attest.inputs import FolderTree, InputRule, git_top, relative_input, rule_digests


def module_folder(name: str) -> Path | None:
    """Where the top-level module ``name`` is imported from: its package folder or its file (None: not found)."""
    module = sys.modules.get(name)
    try:
        spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin else None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class ProjectInputs:
    """The input rule of a project, where its modules come from, and what it would use from outside it."""

    rule: InputRule
    modules: dict[str, str]
    outside: list[str]


def project_inputs(config: Config, root: Path, contracts: Path | None) -> ProjectInputs:
    """The inputs of a run of the project at ``root`` over ``contracts`` (see the module text)."""
    root = root.resolve()
    outside: list[str] = []
    modules: dict[str, str] = {}
    named = [p for p in [contracts, *config.profiles, *config.falsifiers] if p is not None and Path(p).exists()]
    for name in dict.fromkeys(prefix.split(".")[0] for prefix in config.modules):
        found = module_folder(name)
        if found is None:
            continue
        if _inside(found, root):
            modules[name] = relative_input(found, root, f"module {name}")
            named.append(found)
        else:
            outside.append(f"module {name} from {found}")
    own = [Path(p).resolve() for p in named if _inside(Path(p).resolve(), root)]
    outside += [str(p) for p in named if not _inside(Path(p).resolve(), root)]
    rule = InputRule.of(root, [p for p in own if p.is_dir()], [p for p in own if not p.is_dir()])
    return ProjectInputs(rule, modules, sorted(set(outside)))


def run_inputs(found: ProjectInputs, root: Path, collected: Iterable[Path]) -> dict[str, Any]:
    """The ``inputs`` section of a run in the project at ``root`` that collected the files ``collected``."""
    root = root.resolve()
    outside = list(found.outside)
    extra = []
    for path in dict.fromkeys(Path(p).resolve() for p in collected):
        if not _inside(path, root):
            outside.append(f"collected {path}")
        elif not found.rule.matches(relative := relative_input(path, root, "collected file")):
            extra.append(relative)
    return {
        "rule": found.rule.to_json(),
        "files": rule_digests(FolderTree(root), found.rule, extra),
        "modules": dict(found.modules),
        "outside": sorted(set(outside)),
    }


def _cleanroom_python() -> bool:
    """Whether this Python neither writes bytecode nor reads compiled files from beside the sources."""
    return bool(sys.dont_write_bytecode) and bool(sys.pycache_prefix)


def run_source(root: Path, rule: InputRule) -> Source:
    """The git source of this run: the export's, when ``pv verify`` made one for it and this
    process runs as a clean room, else the checkout's at ``root`` (``cleanroom`` false; dirty
    when a tracked file changed or an untracked file is an input under ``rule``)."""
    given = os.environ.get(CLEANROOM_ENV)
    if given and _cleanroom_python() and git_top(root) is None:
        try:
            data = json.loads(given)
            return Source(data["commit"], data["tree"], data["dirty"], cleanroom=data["cleanroom"] is True)
        except (ValueError, KeyError, TypeError):
            pass
    return git_source(root, rule)

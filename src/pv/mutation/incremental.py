"""Incremental runs: a mutant's earlier result is reused while nothing it depends on changed.

Each mutant gets a key (``cache_key`` in the JSON report): the sha256 of pv's
version, the mutant's key and change, the text of the top-level definition that
holds it (a function, a class, a module attribute; the whole module for a
module-level statement), the digests of the files of the tests selected for it,
and of every ``conftest.py`` and configuration file of the run. A re-run with
``--incremental REPORT`` runs only the mutants whose key is not in that earlier
report with a final status, and copies the others' results (``reused``).

What the key does not see: a change in another function that the mutated one
calls (as with mutmut's per-function hashes). ``--since REF`` restricts the
mutants to the top-level definitions whose text changed since a git commit.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pv import __version__
from pv._util.errors import UserError
from pv._util.files import sha256_of
from pv.mutation.results import NOT_RUN, Mutant
from pv.mutation.targets import Target

#: results that can be reused (an equivalent is decided by the equivalents file, and an error by the machine
#: it ran on, a memory limit or a crashed worker: neither is reused)
_FINAL = ("killed", "survived", "no-coverage", "timeout")


@functools.lru_cache(maxsize=32)
def definitions(source: str) -> Mapping[str, str]:
    """The text of each top-level definition of ``source`` by name (functions, classes, assignments).

    Cached: every mutant of a module asks for the same source's definitions (a parse each cost
    0.1 s for a 560-line module, minutes over a run's and a gate's thousands of mutants)."""
    tree = ast.parse(source)
    found: dict[str, str] = {}
    for stmt in tree.body:
        names: list[str] = []
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [stmt.name]
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        segment = ast.get_source_segment(source, stmt, padded=True) or ""
        decorators = getattr(stmt, "decorator_list", [])
        if decorators:  # the decorators are part of what the definition does
            first = min(d.lineno for d in decorators)
            segment = "\n".join(source.splitlines()[first - 1: stmt.lineno - 1]) + "\n" + segment
        for name in names:
            found[name] = segment
    return MappingProxyType(found)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shared(inputs: Mapping[str, str | None]) -> list[tuple[str, str | None]]:
    return sorted((name, digest) for name, digest in inputs.items()
                  if name.endswith("conftest.py") or name in ("pyproject.toml", "pytest.ini"))


def cache_key(key: str, change: str, scope: str, source: str, tests: Sequence[str],
              inputs: Mapping[str, str | None]) -> str:
    """One mutant's cache key: ``source`` is its module's text, ``inputs`` the run's digests."""
    holder = definitions(source).get(scope.split(".")[0], source)
    files = sorted({(test.split("::")[0], inputs.get(test.split("::")[0])) for test in tests})
    return _sha(json.dumps([__version__, key, change, _sha(holder), files, _shared(inputs)]))


def cache_keys(mutants: Sequence[Mutant], inputs: Mapping[str, str | None]) -> dict[str, str]:
    """``{mutant key: cache key}``; ``inputs`` are the run's (relative path -> sha256)."""
    return {m.key: cache_key(m.key, m.site.change, m.site.scope, m.source, m.tests, inputs) for m in mutants}


def stale_mutants(data: Mapping[str, Any], root: Path) -> list[str]:
    """The keys of a ``--format json`` report's mutants whose cache key no longer matches the files under
    ``root``: the results that no longer hold. The others still describe the code (a gate may keep them)."""
    inputs = {name: sha256_of(root / name) for name in data["inputs"]["files"]}
    sources: dict[str, str | None] = {}
    for module, path in data["files"].items():
        try:
            sources[module] = (root / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            sources[module] = None
    stale = []
    for m in data["mutants"]:
        source = sources.get(m["module"])
        try:
            fresh = source is not None and cache_key(m["key"], m["change"], m["scope"], source, m["covered_by"],
                                                     inputs) == m["cache_key"]
        except SyntaxError:
            fresh = False
        if not fresh:
            stale.append(m["key"])
    return stale


def load_previous(path: Path) -> dict[str, dict[str, Any]]:
    """The mutants of an earlier ``--format json`` report by cache key (empty when the file does not exist)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {m["cache_key"]: m for m in data["mutants"] if m.get("cache_key") and m.get("ran_as") in _FINAL}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a report of pv mutate --format json to reuse results from ({err})") from None


def reuse(mutants: Sequence[Mutant], keys: Mapping[str, str], previous: Mapping[str, dict[str, Any]]) -> int:
    """Copy the earlier result of every mutant whose cache key is unchanged; the number reused."""
    count = 0
    for mutant in mutants:
        earlier = previous.get(keys[mutant.key])
        if earlier is None or mutant.status != NOT_RUN:
            continue
        mutant.status, mutant.detail = earlier["ran_as"], earlier.get("detail", "")
        mutant.killed_by, mutant.kind = earlier.get("killed_by"), earlier.get("kill_kind", "")
        mutant.seconds, mutant.applied = float(earlier.get("seconds", 0.0)), earlier.get("applied", "")
        mutant.reused = True
        count += 1
    return count


def changed_definitions(target: Target, root: Path, ref: str) -> set[str]:
    """Top-level names of ``target`` whose text differs from commit ``ref`` (all of them when the file is new)."""
    relative = target.path.relative_to(root).as_posix()
    proc = subprocess.run(["git", "-C", str(root), "show", f"{ref}:{relative}"], capture_output=True, text=True,
                          check=False)
    now = definitions(target.source)
    if proc.returncode != 0:
        if "exists on disk, but not in" in proc.stderr or "does not exist in" in proc.stderr:
            return set(now)
        raise UserError(f"--since {ref}: git cannot read {relative} there: {proc.stderr.strip()}")
    before = definitions(proc.stdout)
    return {name for name, text in now.items() if before.get(name) != text}


def since(mutants: list[Mutant], targets: Sequence[Target], root: Path, ref: str) -> list[Mutant]:
    """The mutants inside top-level definitions changed since ``ref`` (module-level statements: any change)."""
    changed = {target.module: changed_definitions(target, root, ref) for target in targets}
    kept = []
    for mutant in mutants:
        top = mutant.site.scope.split(".")[0]
        if top in changed[mutant.module] or (not top and changed[mutant.module]):
            kept.append(mutant)
    return kept


"""The code reads as the chain it implements: each stage of ``pv`` imports only from the stages
before it, and the system under test (``distill``) never imports the tool, except its commands."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The stages of ``src/pv`` in order; a module may import its own stage and the ones before it.
LAYERS = ("_util", "contracts", "checks", "evidence", "plugins", "cli")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in one file, ``from pv import x`` as ``pv.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> int | None:
    """The stage index of a ``pv`` module, -1 for the package root, None outside ``pv``."""
    parts = module.split(".")
    if parts[0] != "pv":
        return None
    if len(parts) == 1 or parts[1] in ("__version__", "__init__"):
        return -1
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def layer_violations(package: Path) -> list[str]:
    """Every import in ``package`` (a ``pv`` source tree) of a later stage than its own."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] in ("__init__.py", "__main__.py"):
            own = -1 if relative.parts[0] == "__init__.py" else len(LAYERS)
        elif relative.parts[0] in LAYERS:
            own = LAYERS.index(relative.parts[0])
        else:
            problems.append(f"{relative}: outside every stage {LAYERS}")
            continue
        for line, module in _imported_modules(path):
            target = _layer(module)
            if target is not None and target > own:
                problems.append(f"{relative}:{line}: imports {module} of a later stage")
    return problems


def test_every_pv_module_imports_only_earlier_stages() -> None:
    assert layer_violations(ROOT / "src" / "pv") == []


def test_a_planted_back_edge_is_found(tmp_path: Path) -> None:
    copy = tmp_path / "pv"
    shutil.copytree(ROOT / "src" / "pv", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "contracts" / "loading.py"
    target.write_text(target.read_text(encoding="utf-8") + "\nfrom pv.evidence.gate import decide\n", encoding="utf-8")
    problems = layer_violations(copy)
    assert len(problems) == 1 and problems[0].startswith("contracts/loading.py:")
    assert "pv.evidence.gate.decide" in problems[0]


@pytest.mark.parametrize("package", ["distill"])
def test_the_system_under_test_does_not_import_the_tool(package: str) -> None:
    source = ROOT / "impl" / package
    offenders = [
        f"{path.relative_to(source)}:{line}: {module}"
        for path in sorted(source.rglob("*.py")) if "commands" not in path.relative_to(source).parts
        for line, module in _imported_modules(path) if module.split(".")[0] == "pv"
    ]
    assert offenders == []

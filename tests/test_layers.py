"""The code reads as the chain it implements: each stage of ``pv`` imports only from the stages
before it, each module of ``distill`` only from the modules before it in its chain, and the
system under test never imports the tool, except its commands."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The stages of ``src/pv`` in order; a module may import its own stage and the ones before it.
LAYERS = ("_util", "contracts", "checks", "attest", "mutation", "evidence", "plugins", "cli")


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


#: The modules of ``impl/distill`` in the order of its chain; a module may import only earlier ones.
DISTILL_CHAIN = (
    "errors", "inputs", "output", "cpu_workers", "kernels", "quant", "gguf_file", "tokenizer", "model", "qwen2_gguf",
    "synth", "export", "vocab", "teacher", "dispatch", "kd", "data", "students", "evaluate", "parallel", "schedule", "checkpoints", "curves", "run_folder",
    "train", "commands",
)


def chain_violations(package: Path, name: str, chain: tuple[str, ...]) -> list[str]:
    """Every import in ``package`` (imported as ``name``) of a module later in ``chain`` than its own,
    and every import of the tool ``pv`` outside the package's commands."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        top = path.relative_to(package).parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        if top not in chain:
            problems.append(f"{path.relative_to(package)}: not in the chain {chain}")
            continue
        for line, module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] == "pv" and top != "commands":
                problems.append(f"{path.relative_to(package)}:{line}: imports the tool ({module})")
            elif parts[0] == name and len(parts) > 1 and parts[1] in chain and chain.index(parts[1]) > chain.index(top):
                problems.append(f"{path.relative_to(package)}:{line}: imports {module}, later in the chain")
    return problems


def test_distill_imports_follow_its_chain() -> None:
    assert chain_violations(ROOT / "impl" / "distill", "distill", DISTILL_CHAIN) == []


def test_a_planted_distill_back_edge_is_found(tmp_path: Path) -> None:
    copy = tmp_path / "distill"
    shutil.copytree(ROOT / "impl" / "distill", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "quant.py"
    target.write_text(target.read_text(encoding="utf-8") + "\nfrom distill.kd import kd_loss\n", encoding="utf-8")
    problems = chain_violations(copy, "distill", DISTILL_CHAIN)
    assert len(problems) == 1 and problems[0].startswith("quant.py:") and "distill.kd.kd_loss" in problems[0]

"""Contracts reach files: a binding reaches only what a project declares bindable, so no
contract can bind distill's readers and writers (or anything re-exported), under `pv check`
or pytest."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from fuzz_bounded import ROOT, assert_clear_cli, drawn, record, run_batch
from fuzz_contracts import contract
from hypothesis import strategies as st

DISTILL = ROOT / "impl" / "distill"


def _public_names(path: Path) -> tuple[set[str], set[str]]:
    """(every public top-level or imported name, the names listed in ``__pv_bindable__``) of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names, listed = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    if target.id == "__pv_bindable__" and node.value is not None:
                        listed.update(ast.literal_eval(node.value))
                    names.add(target.id)
    return {n for n in names if not n.startswith("_")}, listed


def _unbindable() -> list[str]:
    found = []
    for path in sorted(DISTILL.rglob("*.py")):
        module = ".".join(("distill", *path.relative_to(DISTILL).with_suffix("").parts)).removesuffix(".__init__")
        names, listed = _public_names(path)
        found += [f"{module}:{name}" for name in sorted(names - listed)]
    return found


#: The bindings of the attacks: a writer that replaces any path, readers that leak a file, re-exports.
ATTACKS = ["distill.qwen2_gguf:write_gguf", "distill.tokenizer:read_tokenizer", "distill.gguf_file:read_metadata",
           "distill.vocab:read_header", "distill.synth:write_gguf", "distill.output:whole_file",
           "fuzz_marked:join", "fuzz_marked:unmarked", "os:system", "builtins:open"]


def test_only_declared_names_bind(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    targets = sorted(set(ATTACKS + drawn(st.sampled_from(_unbindable()), 40)))
    for index, binding in enumerate(targets + ["fuzz_marked:listed", "fuzz_marked:marked"]):
        (work / f"fz-bind-{index}.yaml").write_text(contract(name=f"fz-bind-{index}", binding=binding))
    cases = [{"kind": "cli", "argv": ["check", ".", "--format", "json", "--allow-module", "fuzz_marked",
                                      "--allow-module", "os", "--allow-module", "builtins"], "rc": (1,), "max_seconds": 60}]
    batch = run_batch(cases, tmp_path)
    assert_clear_cli(cases, batch)
    verdicts = {v["contract"]: v for v in json.loads(batch.results[0]["stdout"])["verdicts"]}
    for index, binding in enumerate(targets):
        verdict = verdicts[f"fz-bind-{index}"]
        assert verdict["status"] == "error", (binding, verdict)
        assert "bindable" in verdict["detail"] or "not a function defined" in verdict["detail"] \
            or "outside the allowed" in verdict["detail"], (binding, verdict["detail"])
    for index in (len(targets), len(targets) + 1):
        assert verdicts[f"fz-bind-{index}"]["status"] == "proved", verdicts[f"fz-bind-{index}"]
    record("contracts reach files (bindings)", batch, len(targets) + 2)

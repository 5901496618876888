"""`pv graph`, `pv diff` and `pv status` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pv.cli import main
from test_rules_each import BASE, edit


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def contract(folder: Path, stem: str, depends: list[str], text: str = BASE) -> Path:
    path = folder / f"{stem}.yaml"
    path.write_text(edit("  depends_on: []\n", f"  depends_on: {json.dumps(depends)}\n", text), encoding="utf-8")
    return path


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    contract(tmp_path, "a-v1", ["b-v1", "gone-v1"])
    contract(tmp_path, "b-v1", [])
    return tmp_path


def test_graph_text(chain: Path, capsys) -> None:
    assert run(capsys, "graph", chain) == (0, "a-v1 -> b-v1, gone-v1 (missing)\nb-v1\n", "")


def test_graph_json(chain: Path, capsys) -> None:
    code, out, _ = run(capsys, "graph", chain, "--format", "json")
    assert code == 0
    assert json.loads(out) == {"nodes": ["a-v1", "b-v1"], "edges": [["a-v1", "b-v1"], ["a-v1", "gone-v1"]],
                               "missing": {"a-v1": ["gone-v1"]}, "cycles": []}


def test_graph_dot_and_mermaid(chain: Path, capsys) -> None:
    code, out, _ = run(capsys, "graph", chain, "--format", "dot")
    assert code == 0 and out.startswith("digraph contracts {") and '"a-v1" -> "b-v1";' in out
    assert '"gone-v1" [style=dashed' in out
    code, out, _ = run(capsys, "graph", chain, "--format", "mermaid")
    assert code == 0 and out.splitlines()[0] == "graph LR" and "n0 --> n1" in out and "gone-v1 (missing)" in out


def test_graph_cycle_exits_1(tmp_path: Path, capsys) -> None:
    contract(tmp_path, "a-v1", ["b-v1"])
    contract(tmp_path, "b-v1", ["a-v1"])
    contract(tmp_path, "c-v1", ["c-v1"])
    code, out, err = run(capsys, "graph", tmp_path)
    assert code == 1
    assert err.splitlines() == ["pv graph: cycle: a-v1 -> b-v1 -> a-v1", "pv graph: cycle: c-v1 -> c-v1"]


def test_graph_of_unreadable_file_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.yaml").write_bytes(b"\xff\xfe")
    code, _, err = run(capsys, "graph", tmp_path)
    assert code == 2 and "PV-LOAD-004" in err


def versions(tmp_path: Path, old_text: str, new_text: str) -> tuple[Path, Path]:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(old_text)
    new.write_text(new_text)
    return old, new


BUMPED = BASE.replace("version: 1.0.0", "version: 2.0.0")
DIFF_CASES = [
    ("tolerance tightened", edit("1.0e-6", "1.0e-7", BUMPED), "major",
     "proof_obligations[T-INV-001].tolerance: tightened 1e-06 -> 1e-07"),
    ("tolerance loosened", edit("1.0e-6", "1.0e-3", BUMPED), "major", "loosened 1e-06 -> 0.001"),
    ("formal added", edit("  tolerance: 1.0e-6\n", "  tolerance: 1.0e-6\n  formal: f(x) == x\n", BUMPED), "major",
     "proof_obligations[T-INV-001].formal: added `f(x) == x`"),
    ("bound lowered", edit("bound: 4", "bound: 2", BUMPED), "major", "kani_harnesses[KANI-T-001].bound: lowered 4 -> 2"),
    ("bound raised", edit("bound: 4", "bound: 8", BUMPED), "minor", "raised 4 -> 8"),
    ("prediction changed", edit("f(1) == 1", "f(2) == 2", BUMPED), "major",
     "falsification_tests[FT-T-001].prediction: changed `f(1) == 1` -> `f(2) == 2`"),
    ("falsifier removed", edit("- id: FT-T-001\n  rule: identity\n  prediction: f(1) == 1\n  if_fails: f is not the identity\n",
                               "", BUMPED), "major", "falsification_tests: removed FT-T-001"),
    ("gate profile added", edit("[cpu]", "[cpu, h100]", BUMPED), "minor", "qa_gate.require[FT-T-001].profiles: added `h100`"),
    ("gate requirement removed", edit("  require:\n  - falsifier: FT-T-001\n    profiles: [cpu]\n", "", BUMPED), "major",
     "qa_gate.require: removed FT-T-001"),
    ("wording", edit("A minimal contract.", "A small contract.", BUMPED), "patch", "metadata.description: changed"),
]


@pytest.mark.parametrize(("new_text", "level", "line"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES])
def test_diff_levels(tmp_path: Path, capsys, new_text: str, level: str, line: str) -> None:
    code, out, _ = run(capsys, "diff", *versions(tmp_path, BASE, new_text))
    assert code == 0
    lines = out.splitlines()
    assert lines[-1].startswith(f"suggested bump: {level} (1.0.0 -> ")
    assert any(line in entry and entry.startswith(level.upper()) for entry in lines[:-1]), out


def test_diff_identical_is_none(tmp_path: Path, capsys) -> None:
    assert run(capsys, "diff", *versions(tmp_path, BASE, BASE))[:2] == (0, "suggested bump: none (1.0.0 -> 1.0.0); declared 1.0.0 -> 1.0.0 (none)\n")


def test_diff_declared_bump_too_small_exits_1(tmp_path: Path, capsys) -> None:
    new = edit("1.0e-6", "1.0e-7", BASE.replace("version: 1.0.0", "version: 1.1.0"))
    code, out, _ = run(capsys, "diff", *versions(tmp_path, BASE, new), "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert (report["suggested_bump"], report["declared_bump"], report["suggested_version"]) == ("major", "minor", "2.0.0")


def test_diff_of_unreadable_file_exits_2(tmp_path: Path, capsys) -> None:
    old, _ = versions(tmp_path, BASE, BASE)
    assert run(capsys, "diff", old, tmp_path / "absent.yaml")[0] == 2


def test_status(tmp_path: Path, capsys) -> None:
    path = contract(tmp_path, "t-v1", ["other-v1"])
    code, out, _ = run(capsys, "status", path, "--format", "json")
    status = json.loads(out)
    assert code == 0
    assert {k: status[k] for k in ("contract", "equations", "obligations", "obligations_with_id", "falsification_tests",
                                   "kani_harnesses", "depends_on", "errors", "warnings")} == {
        "contract": "t-v1", "equations": 1, "obligations": 1, "obligations_with_id": 1, "falsification_tests": 1,
        "kani_harnesses": 1, "depends_on": ["other-v1"], "errors": 0, "warnings": 0}
    assert status["qa_gate"]["require"] == [{"falsifier": "FT-T-001", "profiles": ["cpu"]}]
    code, out, _ = run(capsys, "status", path)
    assert code == 0 and "qa gate:             F-T-001 (T gate)" in out and "requires FT-T-001 on cpu" in out


def test_status_counts_findings(tmp_path: Path, capsys) -> None:
    path = tmp_path / "t-v1.yaml"
    path.write_text(edit("bound: 4", "bound: 0"))
    code, out, _ = run(capsys, "status", path)
    assert code == 0 and "validation:          1 errors, 0 warnings" in out

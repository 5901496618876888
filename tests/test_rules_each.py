"""One minimal contract per rule: each rule fires, with its id, on the line of the defect.

The base contract is clean (asserted first), so every finding below comes from
the one edit that the case makes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pv.contracts.validate import validate_paths

BASE = """\
metadata:
  version: 1.0.0
  description: A minimal contract.
  depends_on: []
equations:
  f:
    formula: f(x) = x
proof_obligations:
- id: T-INV-001
  type: invariant
  property: f is the identity
  tolerance: 1.0e-6
falsification_tests:
- id: FT-T-001
  rule: identity
  prediction: f(1) == 1
  if_fails: f is not the identity
kani_harnesses:
- id: KANI-T-001
  obligation: T-INV-001
  bound: 4
  strategy: bounded_int
qa_gate:
  id: F-T-001
  name: T gate
  require:
  - falsifier: FT-T-001
    profiles: [cpu]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def findings(tmp_path: Path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return validate_paths([tmp_path]).all_findings()


def test_base_contract_is_clean(tmp_path: Path) -> None:
    assert findings(tmp_path, {"t-v1.yaml": BASE}) == []


# (rule, edited contract, expected line, words the message must contain)
CASES = [
    ("PV-YAML-002", edit("  description: A minimal contract.\n",
                         "  description: A minimal contract.\n  description: again\n"), 4, ["`description`"]),
    ("PV-SCHEMA-001", edit("qa_gate:\n", "qa_gates:\n"), 23, ["`qa_gates`", "did you mean `qa_gate`"]),
    ("PV-SCHEMA-001", edit("  bound: 4\n", "  bound: 4\n  bonud: 5\n"), 22, ["`bonud`", "did you mean `bound`"]),
    ("PV-SCHEMA-002", edit("  tolerance: 1.0e-6\n", "  tolerance: 1.0e-6\n  applies_to: gpu\n"), 13,
     ["`gpu`", "`applies_to`", "all, scalar, simd, converter"]),
    ("PV-SCHEMA-002", edit("  tolerance: 1.0e-6\n", "  tolerance: 1.0e-6\n  applies_to: scaler\n"), 13,
     ["did you mean `scalar`"]),
    ("PV-SCHEMA-003", edit("  bound: 4\n", "  bound: four\n"), 21, ["must be an integer", "a string"]),
    ("PV-SCHEMA-004", edit("  property: f is the identity\n", ""), 9, ["missing the required key `property`"]),
    ("PV-SCHEMA-005", edit("    profiles: [cpu]\n", "    profiles: []\n"), 28, ["profiles"]),
    ("PV-ID-001", edit("- id: FT-T-001\n", "- id: T-INV-001\n"), 14, ["`T-INV-001`", "line 9"]),
    ("PV-ID-002", edit("- id: KANI-T-001\n", "- id: HARNESS-1\n"), 19, ["KANI-<FAMILY>-NNN"]),
    ("PV-ID-002", edit("  id: F-T-001\n", "  id: GATE-T-001\n"), 24, ["F-<FAMILY>-NNN"]),
    ("PV-ID-004", edit("- id: T-INV-001\n  type: invariant\n", "- type: invariant\n"), 9, ["without `id`"]),
    ("PV-REF-001", edit("  obligation: T-INV-001\n", "  obligation: T-INV-002\n"), 20,
     ["`T-INV-002`", "did you mean `T-INV-001`"]),
    ("PV-REF-001", edit("  if_fails: f is not the identity\n",
                        "  if_fails: f is not the identity\n  obligation: T-INV-01\n"), 18,
     ["falsification test `FT-T-001`", "`T-INV-01`", "did you mean `T-INV-001`"]),
    ("PV-REF-002", edit("  depends_on: []\n", "  depends_on: [softmax-v1]\n"), 4, ["`softmax-v1`"]),
    ("PV-REF-004", edit("  - falsifier: FT-T-001\n", "  - falsifier: FT-T-002\n"), 27, ["`FT-T-002`"]),
    ("PV-VAL-001", edit("  tolerance: 1.0e-6\n", "  tolerance: -1.0e-6\n"), 12, ["-1e-06"]),
    ("PV-VAL-001", edit("  tolerance: 1.0e-6\n", "  tolerance: .nan\n"), 12, ["nan"]),
    ("PV-VAL-002", edit("  bound: 4\n", "  bound: 0\n"), 21, ["at least 1"]),
    ("PV-VAL-003", edit("  rule: identity\n", "  rule: '  '\n"), 15, ["`rule` is blank"]),
]


@pytest.mark.parametrize(("rule", "text", "line", "words"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires_on_its_line(tmp_path: Path, rule: str, text: str, line: int, words: list[str]) -> None:
    found = [f for f in findings(tmp_path, {"t-v1.yaml": text}) if f.rule == rule]
    assert [f.location.line for f in found] == [line], found
    for word in words:
        assert word in found[0].message


def test_zero_tolerance_means_exact_and_is_accepted(tmp_path: Path) -> None:
    text = edit("  tolerance: 1.0e-6\n", "  tolerance: 0.0\n")
    assert findings(tmp_path, {"t-v1.yaml": text}) == []


def test_ids_shared_by_two_contracts(tmp_path: Path) -> None:
    found = findings(tmp_path, {"a-v1.yaml": BASE, "b-v1.yaml": BASE})
    shared = sorted((Path(f.location.path).name, f.location.line) for f in found if f.rule == "PV-ID-003")
    assert shared == [(name, line) for name in ("a-v1.yaml", "b-v1.yaml") for line in (14, 19, 24)]
    assert [f for f in found if f.rule != "PV-ID-003"] == []


def _renamed(text: str, family: str) -> str:
    return text.replace("-T-", f"-{family}-")


def test_depends_on_cycle(tmp_path: Path) -> None:
    a = edit("  depends_on: []\n", "  depends_on: [b-v1]\n", _renamed(BASE, "A"))
    b = edit("  depends_on: []\n", "  depends_on:\n  - c-v1\n", _renamed(BASE, "B"))
    c = edit("  depends_on: []\n", "  depends_on: [a-v1]\n", _renamed(BASE, "C"))
    d = edit("  depends_on: []\n", "  depends_on: [a-v1]\n", _renamed(BASE, "D"))  # on no cycle
    found = findings(tmp_path, {"a-v1.yaml": a, "b-v1.yaml": b, "c-v1.yaml": c, "d-v1.yaml": d})
    cycles = sorted((Path(f.location.path).name, f.location.line) for f in found if f.rule == "PV-REF-003")
    assert cycles == [("a-v1.yaml", 4), ("b-v1.yaml", 5), ("c-v1.yaml", 4)]
    assert "a-v1 -> b-v1 -> c-v1 -> a-v1" in next(f.message for f in found if f.rule == "PV-REF-003")
    assert [f.rule for f in found if f.rule != "PV-REF-003"] == []


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    found = findings(tmp_path, {"t-v1.yaml": edit("  depends_on: []\n", "  depends_on: [t-v1]\n")})
    assert [(f.rule, f.location.line) for f in found] == [("PV-REF-003", 4)]


BINDINGS = """\
version: "1.0.0"
bindings:
- contract: t-v1.yaml
  equation: f
  status: implemented
- contract: t-v1.yaml
  equation: g
  status: implemented
- contract: missing-v1.yaml
  equation: f
  status: partial
"""


def test_binding_registry_references(tmp_path: Path) -> None:
    found = findings(tmp_path, {"t-v1.yaml": BASE, "binding.yaml": BINDINGS})
    assert [(f.rule, f.location.line) for f in found] == [("PV-REF-005", 7), ("PV-REF-005", 9)]


def test_binding_registry_schema(tmp_path: Path) -> None:
    found = findings(tmp_path, {"t-v1.yaml": BASE, "binding.yaml": BINDINGS.replace("status: partial", "status: done")})
    assert [(f.rule, f.location.line) for f in found if f.rule.startswith("PV-SCHEMA")] == [("PV-SCHEMA-002", 11)]


def test_every_registered_rule_has_a_case() -> None:
    from pv.contracts.rules.registry import all_rules

    covered = {case[0] for case in CASES} | {"PV-ID-003", "PV-REF-003", "PV-REF-005"}
    ours = {r.id for r in all_rules() if not r.id.startswith("PV-EXPR")}
    assert ours <= covered, ours - covered

"""The real corpus: every upstream file is read, and each finding kind is a real defect, counted.

The expected counts are computed here from the files themselves with plain
PyYAML (an independent reader), so that a finding the validator adds or loses
shows up as a mismatch, not as a silently updated number.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pv.contracts.validate import validate_paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(upstream_contracts: Path):
    result = validate_paths([upstream_contracts])
    raw = {str(p): yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(upstream_contracts.rglob("*.yaml"))}
    return result, raw


def by_rule(result, rule: str) -> list:
    return [f for f in result.all_findings() if f.rule == rule]


def contracts(raw: dict) -> dict:
    return {path: data for path, data in raw.items() if "metadata" in data}


def test_every_file_is_read(corpus) -> None:
    result, raw = corpus
    assert result.load_errors == []
    assert len(result.documents) == len(raw) == 95
    assert not by_rule(result, "PV-INTERNAL-001")


def test_only_these_kinds_of_findings(corpus) -> None:
    result, _ = corpus
    assert set(Counter(f.rule for f in result.all_findings())) == {
        "PV-REF-001", "PV-ID-004", "PV-ID-003", "PV-ID-002", "PV-SCHEMA-002", "PV-SCHEMA-004", "PV-REF-005",
    }


def test_kani_harnesses_point_at_nothing(corpus) -> None:
    result, raw = corpus
    dangling = []
    for path, data in contracts(raw).items():
        ids = {ob.get("id") for ob in data.get("proof_obligations") or []}
        dangling += [(path, h["obligation"]) for h in data.get("kani_harnesses") or [] if h["obligation"] not in ids]
    found = by_rule(result, "PV-REF-001")
    assert len(found) == len(dangling) == 166
    total = sum(len(d.get("kani_harnesses") or []) for d in raw.values())
    assert total == 166  # not one harness of the corpus names an existing obligation id


def test_obligations_without_id_are_warnings(corpus) -> None:
    result, raw = corpus
    expected = sum("id" not in ob for d in contracts(raw).values() for ob in d.get("proof_obligations") or [])
    found = by_rule(result, "PV-ID-004")
    assert len(found) == expected == 477
    assert {f.severity.value for f in found} == {"warning"}


def test_ids_shared_between_contracts(corpus) -> None:
    result, raw = corpus
    owners: dict[str, set[str]] = {}
    for path, data in contracts(raw).items():
        ids = [t["id"] for t in data.get("falsification_tests") or []] + [k["id"] for k in data.get("kani_harnesses") or []]
        ids += [data["qa_gate"]["id"]] if data.get("qa_gate") else []
        for ident in ids:
            owners.setdefault(ident, set()).add(Path(path).stem)
    shared = {i for i, stems in owners.items() if len(stems) > 1}
    assert shared == {*(f"FALSIFY-AL-00{n}" for n in range(1, 6)), *(f"FALSIFY-RM-00{n}" for n in range(1, 6)),
                      "KANI-AL-001", "KANI-AL-002", "KANI-RM-001", "F-AL-001", "F-RM-001"}
    found = by_rule(result, "PV-ID-003")
    assert len(found) == 2 * len(shared)
    assert {re.search(r"`(.+?)`", f.message).group(1) for f in found} == shared


def test_id_formats(corpus) -> None:
    result, _ = corpus
    found = sorted(re.search(r"`(.+?)`", f.message).group(1) for f in by_rule(result, "PV-ID-002"))
    assert found == sorted([f"FALSIFY-00{n}" for n in range(1, 9)] + [f"PARITY-00{n}" for n in range(1, 5)])


def test_applies_to_outside_the_dialect(corpus) -> None:
    result, raw = corpus
    expected = sorted(ob["applies_to"] for d in contracts(raw).values() for ob in d.get("proof_obligations") or []
                      if ob.get("applies_to") not in (None, "all", "scalar", "simd", "converter"))
    found = sorted(re.search(r"`(.+?)`", f.message).group(1) for f in by_rule(result, "PV-SCHEMA-002"))
    assert found == expected and len(found) == 11


def test_falsifiers_without_if_fails(corpus) -> None:
    result, raw = corpus
    expected = [(p, t["id"]) for p, d in contracts(raw).items() for t in d.get("falsification_tests") or [] if "if_fails" not in t]
    found = by_rule(result, "PV-SCHEMA-004")
    assert len(found) == len(expected) == 8
    assert {Path(f.location.path).name for f in found} == {"tensor-layout-v1.yaml"}


def test_bindings_to_missing_equations(corpus) -> None:
    result, _ = corpus
    found = [re.search(r"equation `(.+?)`", f.message).group(1) for f in by_rule(result, "PV-REF-005")]
    assert found == ["gguf_loader_validation", "apr_loader_validation", "safetensors_loader_validation",
                     "import_completeness_gate"]


def test_tolerances_parse_as_numbers(corpus) -> None:
    # `1e-5` is a string to PyYAML (YAML 1.1) but a float in YAML 1.2, as the reference tool reads it.
    result, _ = corpus
    doc = next(d for d in result.documents if d.stem == "kv-cache-equivalence-v1")
    assert [ob.get("tolerance") for ob in doc.data["proof_obligations"] if "tolerance" in ob][:2] == [1e-5, 1e-5]


def test_our_contracts_validate_clean() -> None:
    result = validate_paths([REPO / "contracts"])
    assert result.documents, "no contracts found"
    assert [f.format_text() for f in result.all_findings()] == []

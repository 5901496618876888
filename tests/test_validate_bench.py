"""The validation benchmark measures what it claims: its generated contracts are valid, and start-up stays light."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pv.contracts.validate import validate_paths

BENCH = Path(__file__).resolve().parents[1] / "bench" / "validate.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_validate", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_corpus_is_clean_and_linked(tmp_path: Path) -> None:
    bench = _bench()
    bench.write_corpus(tmp_path, 7, families=3)
    result = validate_paths([tmp_path])
    assert len(result.documents) == 7
    assert [f.format_text() for f in result.all_findings()] == []
    assert result.documents[1].data["metadata"]["depends_on"] == ["c0-v1"]
    assert "depends_on" not in result.documents[3].data["metadata"]  # a new chain every 3 contracts
    assert 3000 < len(bench.contract_text(1, 3)) < 6000


def test_start_up_imports_nothing_heavy(tmp_path: Path) -> None:
    bench = _bench()
    (tmp_path / "c0-v1.yaml").write_text(bench.contract_text(0, 1))
    assert bench.heavy_imports(tmp_path) == []
    (tmp_path / "c0-v1.yaml").write_text(bench.contract_text(0, 1).replace("qa_gate:", "qa_gates:"))
    assert bench.heavy_imports(tmp_path) == ["jsonschema"]  # errors are explained by jsonschema, imported then

"""The mutation report pv-distill commits in the shared format says what its signed evidence says."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema

from pv.attest.envelopes import MUTATION_REPORT
from pv.mutation.stryker import STATUS_NAMES

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "reports" / "mutate" / "distill-core.intoto.jsonl"
SHARED = ROOT / "reports" / "mutate" / "distill-core.stryker.json"
SCHEMA = Path(__file__).parent / "data" / "mutation-testing-report-schema.json"


def _evidence_mutants() -> list[dict]:
    statements = [json.loads(base64.b64decode(json.loads(line)["payload"]))
                  for line in EVIDENCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    (report,) = [s["predicate"] for s in statements if s["predicateType"] == MUTATION_REPORT]
    return report["mutants"]


def test_the_committed_shared_format_report_is_valid_and_matches_the_signed_evidence() -> None:
    shared = json.loads(SHARED.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).validate(shared)
    listed = {m["id"]: m["status"] for file in shared["files"].values() for m in file["mutants"]}
    evidence = {m["key"]: STATUS_NAMES[m["status"]] for m in _evidence_mutants()}
    assert listed == evidence and len(listed) > 0

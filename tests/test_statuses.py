"""Statuses are ordered str-Enums: their order is the precedence, their values are the JSON."""

from __future__ import annotations

import json

import pytest

from pv._util.enums import OrderedStrEnum
from pv._util.resources import schema_text
from pv.checks.verdicts import Status
from pv.evidence.build import combine_verdicts, falsifier_status
from pv.evidence.records import TestRecord as Record
from pv.evidence.report_schema import SCHEMA_FILE
from pv.evidence.statuses import FalsifierStatus, GateVerdict, MutantStatus


def _schema_enum(*path: str) -> set[str]:
    node = json.loads(schema_text(SCHEMA_FILE))["$defs"]
    for key in path:
        node = node[key]
    return set(node["enum"])


def test_the_report_schema_holds_exactly_the_enum_values() -> None:
    assert _schema_enum("falsifier", "properties", "status") == {s.value for s in FalsifierStatus}
    assert _schema_enum("mutant", "properties", "status") == {s.value for s in MutantStatus} - {"unproven", "crashed"}
    assert _schema_enum("obligation", "properties", "status") == {s.value for s in Status}
    assert _schema_enum("verdict", "properties", "status") == {s.value for s in Status} - {"not-run"}


def test_members_compare_by_declaration_and_serialise_as_their_value() -> None:
    assert Status.REFUTED < Status.PROVED and "refuted" > "proved"  # not the string order
    assert GateVerdict.FAIL < GateVerdict.PASS
    assert sorted([Status.UNCHECKED, Status.PASSED, Status.REFUTED]) == [Status.REFUTED, Status.PASSED, Status.UNCHECKED]
    assert json.dumps({"s": MutantStatus.KILLED}) == '{"s": "killed"}'
    assert f"{FalsifierStatus.NOT_RUN}" == "not-run" and FalsifierStatus.NOT_RUN == "not-run"
    with pytest.raises(TypeError):
        _ = GateVerdict.FAIL < MutantStatus.KILLED
    assert issubclass(Status, OrderedStrEnum)


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        (["proved", "refuted"], Status.REFUTED),
        (["passed", "error", "vacuous"], Status.ERROR),
        (["not-confirmed", "passed"], Status.PASSED),
        (["unchecked", "not-applicable"], Status.NOT_APPLICABLE),
        ([], Status.NOT_RUN),
    ],
)
def test_the_first_status_in_order_decides_an_obligation(verdicts: list[str], combined: Status) -> None:
    assert combine_verdicts(verdicts) is combined


def _record(outcome: str) -> Record:
    return Record(f"t::{outcome}", outcome=outcome, reason=f"it {outcome}", called=True)


def _mutant(status: str) -> dict:
    return {"mutant": "m", "nodeid": f"t::{status}", "status": status, "detail": "d"}


@pytest.mark.parametrize(
    ("outcomes", "mutants", "status"),
    [
        (["passed", "failed"], ["survived"], FalsifierStatus.FAILED),
        (["passed", "error"], ["survived"], FalsifierStatus.ERROR),
        (["passed"], ["killed", "survived"], FalsifierStatus.VACUOUS),
        (["passed"], ["survived", "error"], FalsifierStatus.ERROR),
        (["skipped"], ["killed"], FalsifierStatus.SKIPPED),
        (["skipped"], ["skipped"], FalsifierStatus.SKIPPED),  # the test's skip is the cause
        (["passed"], ["skipped"], FalsifierStatus.VACUOUS),  # not shown able to fail
        (["passed", "passed"], ["killed"], FalsifierStatus.PASSED),
    ],
)
def test_the_worst_result_decides_a_falsifier(outcomes: list[str], mutants: list[str], status: FalsifierStatus) -> None:
    found, reason = falsifier_status([_record(o) for o in outcomes], [_mutant(m) for m in mutants])
    assert found is status
    assert (reason is None) == (status is FalsifierStatus.PASSED)

"""Assemble a gate report from folded test records, collection facts and contracts.

Everything here is deterministic: entries are sorted by id and node id, so a
serial run and an xdist run of the same tests give the same report apart from
times (``created``, ``duration_s``) and the integrity digest over them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pv.evidence.contracts import ContractInfo
from pv.evidence.records import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    TEST_OUTCOMES,
    XFAILED,
    TestRecord,
    executed,
)
from pv.evidence.vacuity import ITEM_PROPERTY, MUTANT_PROPERTY
from pv.checks.verdicts import Status

FORMAT = "pv-gate-report/1"

#: user_properties names read from test items
FALSIFIES_PROPERTY = "pv_falsifies"
EVIDENCE_PROPERTY = "pv_evidence"
VERDICT_PROPERTY = "pv_verdict"

#: status of a falsifier in one report
F_PASSED, F_FAILED, F_VACUOUS, F_SKIPPED, F_NOT_RUN, F_ERROR = (
    "passed", "failed", "vacuous", "skipped", "not-run", "error",
)
#: status of one mutant run (its outcome is already inverted by the vacuity plugin)
KILLED, SURVIVED = "killed", "survived"
#: status of an obligation without a verdict (a check that produced none); otherwise a verdict status
NOT_RUN = "not-run"

_NEGATIVE_VERDICTS = (Status.REFUTED, Status.ERROR, Status.VACUOUS)
_POSITIVE_ORDER = (Status.PROVED, Status.PASSED, Status.NOT_CONFIRMED, Status.NOT_APPLICABLE, Status.UNCHECKED)


def combine_verdicts(statuses: Iterable[str]) -> str:
    """One status for an obligation from the verdicts of its engines (and runs).

    Any refuted, error or vacuous verdict decides; otherwise the strongest
    evidence: proved, then passed, then not-confirmed, not-applicable, unchecked.
    No verdict at all is ``not-run``.
    """
    found = {Status(s) for s in statuses}
    for status in (*_NEGATIVE_VERDICTS, *_POSITIVE_ORDER):
        if status in found:
            return status.value
    return NOT_RUN


@dataclass
class Collection:
    """What the collecting process(es) selected and deselected, by falsifier id.

    Under xdist every worker collects the same items; ``merge`` takes the union.
    """

    selected: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    deselected: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    items: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "Collection") -> None:
        """Add what another process (an xdist worker) collected."""
        for mine, theirs in ((self.selected, other.selected), (self.deselected, other.deselected)):
            for ft_id, nodeids in theirs.items():
                mine[ft_id] |= nodeids
        self.items = max(self.items, other.items)
        self.errors.update(other.errors)

    def to_json(self) -> dict[str, Any]:
        """Plain data (for xdist's ``workeroutput``)."""
        return {
            "selected": {k: sorted(v) for k, v in self.selected.items()},
            "deselected": {k: sorted(v) for k, v in self.deselected.items()},
            "items": self.items,
            "errors": dict(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Collection":
        """The inverse of :meth:`to_json`."""
        found = cls(items=int(data["items"]), errors=dict(data["errors"]))
        for key in ("selected", "deselected"):
            for ft_id, nodeids in data[key].items():
                getattr(found, key)[ft_id] |= set(nodeids)
        return found


@dataclass(frozen=True)
class Selection:
    """How the run was filtered: positional args, ``-m`` and ``-k``."""

    args: tuple[str, ...]
    markexpr: str | None
    keyword: str | None

    def describe(self) -> str:
        """The ``-m``/``-k`` filters as typed, or "the run's selection" when there were none."""
        parts = [f"-m {self.markexpr!r}" if self.markexpr else "", f"-k {self.keyword!r}" if self.keyword else ""]
        return " ".join(p for p in parts if p) or "the run's selection"


# --- falsifiers ---------------------------------------------------------------------------


def _evidence(record: TestRecord) -> list[dict[str, Any]]:
    return [dict(value) for value in record.values(EVIDENCE_PROPERTY)]


def _test_entry(record: TestRecord) -> dict[str, Any]:
    return {
        "nodeid": record.nodeid,
        "outcome": record.outcome,
        "reason": record.reason,
        "duration_s": round(record.duration_s, 6),
        "evidence": _evidence(record),
    }


def _mutant_status(record: TestRecord) -> str:
    return {PASSED: KILLED, FAILED: SURVIVED, SKIPPED: SKIPPED}.get(record.outcome, ERROR)


def _mutant_entries(record: TestRecord, mutant: str, falsifiers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per falsifier id, the entry of one mutant run."""
    details = {m["falsifier"]: m for m in record.values(MUTANT_PROPERTY)}
    entries = {}
    for ft_id in falsifiers:
        recorded = details.get(ft_id)
        status = _mutant_status(record)
        if recorded is not None and record.outcome in (PASSED, FAILED):
            status = KILLED if recorded.get("killed") else SURVIVED
        detail = recorded.get("detail") if recorded else record.reason
        entries[ft_id] = {"mutant": mutant, "nodeid": record.nodeid, "status": status, "detail": detail or None}
    return entries


def _split(
    records: Iterable[TestRecord],
) -> tuple[dict[str, list[TestRecord]], dict[str, list[dict[str, Any]]]]:
    """Falsifier id -> its test records, and falsifier id -> its mutant-run entries."""
    tests: dict[str, list[TestRecord]] = defaultdict(list)
    mutants: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        vacuity = record.first(ITEM_PROPERTY)
        if vacuity is not None and vacuity.get("mutant") is not None:
            for ft_id, entry in _mutant_entries(record, vacuity["mutant"], vacuity["falsifiers"]).items():
                mutants[ft_id].append(entry)
            continue
        for ft_id in dict.fromkeys(record.first(FALSIFIES_PROPERTY) or ()):
            tests[ft_id].append(record)
    return tests, mutants


def falsifier_status(
    tests: Sequence[TestRecord],
    mutants: Sequence[dict[str, Any]],
) -> tuple[str, str | None]:
    """Status and reason of a falsifier from its tests and mutant runs (tests non-empty).

    Precedence: failed, error, vacuous (a mutant survived), error (a mutant run
    broke), skipped, vacuous (the tests passed but a mutant run was skipped, so
    the falsifier was not shown able to fail), passed. A skip is never a pass.
    """
    by_outcome: dict[str, list[TestRecord]] = defaultdict(list)
    for record in tests:
        by_outcome[record.outcome].append(record)
    for outcome, status in ((FAILED, F_FAILED), (XFAILED, F_FAILED), (ERROR, F_ERROR)):
        if by_outcome[outcome]:
            first = by_outcome[outcome][0]
            return status, f"{first.nodeid}: {first.reason}"
    by_status: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for mutant in mutants:
        by_status[mutant["status"]].append(mutant)
    if by_status[SURVIVED]:
        first = by_status[SURVIVED][0]
        return F_VACUOUS, f"mutant {first['mutant']} survived: {first['nodeid']} passed with it applied"
    if by_status[ERROR]:
        first = by_status[ERROR][0]
        return F_ERROR, f"mutant run {first['nodeid']} errored: {first['detail']}"
    if by_outcome[SKIPPED]:
        first = by_outcome[SKIPPED][0]
        return F_SKIPPED, f"{first.nodeid}: {first.reason}"
    if by_status[SKIPPED]:
        first = by_status[SKIPPED][0]
        return F_VACUOUS, f"mutant {first['mutant']} was skipped ({first['detail']}): not shown able to fail"
    return F_PASSED, None


def _not_run_reason(ft_id: str, collection: Collection, selection: Selection) -> str:
    if collection.selected.get(ft_id):
        return "collected but never reported (the session stopped early)"
    deselected = collection.deselected.get(ft_id)
    if deselected:
        return f"{len(deselected)} test(s) deselected by {selection.describe()}"
    if collection.errors:
        return f"no test marked falsifies({ft_id}) was collected; collection errors in: " + ", ".join(
            sorted(collection.errors)
        )
    return f"no collected test is marked falsifies({ft_id})"


def falsifier_entries(
    records: Iterable[TestRecord],
    collection: Collection,
    contracts: Sequence[ContractInfo],
    selection: Selection,
) -> list[dict[str, Any]]:
    """One entry per falsifier id named by a contract or by a test, sorted by id."""
    tests, mutants = _split(records)
    owner = {}
    for contract in contracts:
        for ft_id in contract.falsifiers:
            owner.setdefault(ft_id, contract.name)
    ids = set(owner) | set(tests) | set(mutants) | set(collection.selected) | set(collection.deselected)
    entries = []
    for ft_id in sorted(ids):
        own_tests = sorted(tests.get(ft_id, []), key=lambda r: r.nodeid)
        own_mutants = sorted(mutants.get(ft_id, []), key=lambda m: (m["mutant"], m["nodeid"]))
        if own_tests:
            status, reason = falsifier_status(own_tests, own_mutants)
        else:
            status, reason = F_NOT_RUN, _not_run_reason(ft_id, collection, selection)
        entries.append({
            "id": ft_id,
            "contract": owner.get(ft_id),
            "status": status,
            "reason": reason,
            "duration_s": round(sum(r.duration_s for r in own_tests), 6),
            "tests": [_test_entry(r) for r in own_tests],
            "mutants": own_mutants,
        })
    return entries


# --- obligations --------------------------------------------------------------------------


def obligation_entries(
    records: Iterable[TestRecord],
    contracts: Sequence[ContractInfo],
) -> list[dict[str, Any]]:
    """One entry per obligation of every contract, with the verdicts the run produced."""
    verdicts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        for verdict in record.values(VERDICT_PROPERTY):
            key = (str(verdict.get("contract")), str(verdict.get("obligation")))
            verdicts[key].append({**verdict, "nodeid": record.nodeid})
    keys: list[tuple[str, str, bool]] = []
    for contract in contracts:
        checked = set(contract.checked_obligations)
        keys += [(contract.name, ob, ob in checked) for ob in contract.obligations]
    known = {(c, o) for c, o, _ in keys}
    keys += [(c, o, True) for c, o in sorted(verdicts) if (c, o) not in known]
    entries = []
    for contract, obligation, checked in keys:
        found = sorted(verdicts.get((contract, obligation), []), key=lambda v: (str(v.get("engine")), v["nodeid"]))
        status = combine_verdicts(v["status"] for v in found) if (found or checked) else Status.UNCHECKED.value
        entries.append({
            "contract": contract,
            "obligation": obligation,
            "checked": checked,
            "status": status,
            "verdicts": found,
        })
    return entries


# --- the report ---------------------------------------------------------------------------


def session_entry(
    records: Sequence[TestRecord],
    collection: Collection,
    selection: Selection,
    *,
    vacuity: bool,
    exitstatus: int,
    duration_s: float,
) -> dict[str, Any]:
    """The ``session`` section: selection, counts and pytest's own exit status."""
    outcomes = {outcome: 0 for outcome in TEST_OUTCOMES}
    for record in records:
        outcomes[record.outcome] += 1
    executed_count = sum(executed(r) for r in records)
    return {
        "args": list(selection.args),
        "markexpr": selection.markexpr,
        "keyword": selection.keyword,
        "vacuity": vacuity,
        "pytest_exitstatus": exitstatus,
        "duration_s": round(duration_s, 3),
        "tests_collected": collection.items,
        "tests_executed": executed_count,
        "outcomes": outcomes,
        "collection_errors": [{"nodeid": k, "message": v} for k, v in sorted(collection.errors.items())],
    }


def build_report(
    *,
    created: str,
    records: Sequence[TestRecord],
    collection: Collection,
    contracts: Sequence[ContractInfo],
    selection: Selection,
    session: dict[str, Any],
    profile: dict[str, Any],
    environment: dict[str, Any],
) -> dict[str, Any]:
    """The whole report, unsealed (see ``pv.evidence.integrity.seal``)."""
    return {
        "format": FORMAT,
        "created": created,
        "session": session,
        "profile": profile,
        "environment": environment,
        "contracts": [c.to_json() for c in contracts],
        "falsifiers": falsifier_entries(records, collection, contracts, selection),
        "obligations": obligation_entries(records, contracts),
    }

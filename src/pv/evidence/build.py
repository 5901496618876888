"""Assemble a gate report from folded test records, collection facts and contracts.

Everything here is deterministic: entries are sorted by id and node id, so a
serial run and an xdist run of the same tests give the same report apart from
times (``created``, ``duration_s``) and the checksum and signature over them.
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
from pv.evidence.statuses import FalsifierStatus, MutantStatus
from pv.evidence.vacuity import ITEM_PROPERTY, MUTANT_PROPERTY
from pv.checks.verdicts import Status

FORMAT = "pv-gate-report/3"

#: user_properties names read from test items
FALSIFIES_PROPERTY = "pv_falsifies"
EVIDENCE_PROPERTY = "pv_evidence"
VERDICT_PROPERTY = "pv_verdict"


def combine_verdicts(statuses: Iterable[str]) -> Status:
    """One status for an obligation from the verdicts of its engines (and runs).

    The first in ``Status`` order decides: any refuted, error or vacuous
    verdict, otherwise the strongest evidence. No verdict at all is ``not-run``.
    """
    return Status.first(statuses, Status.NOT_RUN)


@dataclass
class Collection:
    """What the collecting process(es) selected and deselected, by falsifier id.

    Under xdist every worker collects the same items; ``merge`` takes the union.
    """

    selected: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    deselected: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    items: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    #: the files of the collected tests (inputs of the run)
    files: set[str] = field(default_factory=set)

    def merge(self, other: "Collection") -> None:
        """Add what another process (an xdist worker) collected."""
        for mine, theirs in ((self.selected, other.selected), (self.deselected, other.deselected)):
            for ft_id, nodeids in theirs.items():
                mine[ft_id] |= nodeids
        self.items = max(self.items, other.items)
        self.errors.update(other.errors)
        self.files |= other.files

    def to_json(self) -> dict[str, Any]:
        """Plain data (for xdist's ``workeroutput``)."""
        return {
            "selected": {k: sorted(v) for k, v in self.selected.items()},
            "deselected": {k: sorted(v) for k, v in self.deselected.items()},
            "items": self.items,
            "errors": dict(self.errors),
            "files": sorted(self.files),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Collection":
        """The inverse of :meth:`to_json`."""
        found = cls(items=int(data["items"]), errors=dict(data["errors"]), files=set(data["files"]))
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


_MUTANT_BY_OUTCOME = {PASSED: MutantStatus.KILLED, FAILED: MutantStatus.SURVIVED, SKIPPED: MutantStatus.SKIPPED}


def _mutant_status(record: TestRecord) -> MutantStatus:
    return _MUTANT_BY_OUTCOME.get(record.outcome, MutantStatus.ERROR)


def _mutant_entries(record: TestRecord, mutant: str, falsifiers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per falsifier id, the entry of one mutant run."""
    details = {m["falsifier"]: m for m in record.values(MUTANT_PROPERTY)}
    entries = {}
    for ft_id in falsifiers:
        recorded = details.get(ft_id)
        status = _mutant_status(record)
        if recorded is not None and record.outcome in (PASSED, FAILED):
            status = MutantStatus.KILLED if recorded.get("killed") else MutantStatus.SURVIVED
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


#: a test's outcome as a falsifier status (xpassed: pytest already fails it under xfail_strict)
_FALSIFIER_BY_OUTCOME = {
    FAILED: FalsifierStatus.FAILED,
    XFAILED: FalsifierStatus.FAILED,
    ERROR: FalsifierStatus.ERROR,
    SKIPPED: FalsifierStatus.SKIPPED,
}


def falsifier_status(
    tests: Sequence[TestRecord],
    mutants: Sequence[dict[str, Any]],
) -> tuple[FalsifierStatus, str | None]:
    """Status and reason of a falsifier from its tests and mutant runs (tests non-empty).

    The worst result in ``FalsifierStatus`` order decides (at equal status the
    first test, then the first mutant run): a failed or erroring test, a
    mutant that survived (vacuous) or whose run broke (error), a skipped test.
    A skipped mutant run makes the falsifier vacuous (not shown able to fail)
    unless one of its tests was skipped too, which is then the cause. A skip is
    never a pass.
    """
    results = [
        (_FALSIFIER_BY_OUTCOME.get(record.outcome, FalsifierStatus.PASSED), f"{record.nodeid}: {record.reason}")
        for record in tests
    ]
    test_skipped = any(record.outcome == SKIPPED for record in tests)
    for mutant in mutants:
        status = MutantStatus(mutant["status"])
        if status is MutantStatus.SURVIVED:
            results.append((FalsifierStatus.VACUOUS,
                            f"mutant {mutant['mutant']} survived: {mutant['nodeid']} passed with it applied"))
        elif status is MutantStatus.ERROR:
            results.append((FalsifierStatus.ERROR, f"mutant run {mutant['nodeid']} errored: {mutant['detail']}"))
        elif status is MutantStatus.SKIPPED and not test_skipped:
            results.append((FalsifierStatus.VACUOUS, f"mutant {mutant['mutant']} was skipped "
                            f"({mutant['detail']}): not shown able to fail"))
    status, reason = min(results, key=lambda result: result[0])
    return status, None if status is FalsifierStatus.PASSED else reason


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
            status, reason = FalsifierStatus.NOT_RUN, _not_run_reason(ft_id, collection, selection)
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
    keys = list({(c, o): (c, o, checked) for c, o, checked in reversed(keys)}.values())[::-1]
    known = {(c, o) for c, o, _ in keys}
    keys += [(c, o, True) for c, o in sorted(verdicts) if (c, o) not in known]
    entries = []
    for contract, obligation, checked in keys:
        found = sorted(verdicts.get((contract, obligation), []), key=lambda v: (str(v.get("engine")), v["nodeid"]))
        status = combine_verdicts(v["status"] for v in found) if (found or checked) else Status.UNCHECKED
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
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """The whole report, without its checksum (``pv.evidence.integrity``).

    ``inputs``: the files the verdicts rest on (``pv.evidence.run_inputs.run_inputs``).
    """
    return {
        "format": FORMAT,
        "created": created,
        "session": session,
        "profile": profile,
        "environment": environment,
        "contracts": [c.to_json() for c in contracts],
        "falsifiers": falsifier_entries(records, collection, contracts, selection),
        "obligations": obligation_entries(records, contracts),
        "inputs": inputs,
    }

"""The gate: decide each contract's ``qa_gate`` and the release from gate reports.

A contract's gate passes only when, in the reports made from exactly this
version of the contract (same sha256):

- every falsifier of ``qa_gate.require`` passed on a profile its entry names,
  in a report whose profile matches the device it ran on, and killed every
  mutant it names (``--pv-vacuity``): a skip, a deselection, a missing run or
  an unshown vacuity check is never a pass;
- no falsifier of the contract failed, was vacuous or errored in any report;
- every obligation with an executable check is ``proved`` or ``passed``.

Scope: with ``release=True`` every required profile must be covered by some
report, every contract must require at least one falsifier, and all reports
must come from one clean commit. Without it, requirements are decided only for
the profiles the given reports come from (``pv verify`` gates the active
profile); the rest are listed as out of scope, and the release needs
``pv gate --release`` over reports from every required profile.

In either mode, a report that executed zero tests, had collection errors, or
whose profile does not match the device it ran on (``--profile h100`` on a
CPU), fails the gate.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv.evidence.build import F_PASSED, KILLED, NOT_RUN, combine_verdicts
from pv.evidence.contracts import ContractInfo, Requirement
from pv.evidence.integrity import content_digest, is_intact
from pv.evidence.report_schema import schema_problems

PASS, FAIL = "pass", "fail"
MET, UNMET, OUT_OF_SCOPE = "met", "unmet", "out-of-scope"
_NEGATIVE_FALSIFIER = ("failed", "vacuous", "error")
_SUCCESS_OBLIGATION = ("proved", "passed")


class ReportError(UserError):
    """A gate report that cannot be read, is invalid, was edited, or does not match the contracts."""


@dataclass
class Report:
    """One gate report, read, validated against the schema and found intact."""

    path: str
    data: dict[str, Any]

    @property
    def profile(self) -> str:
        """The name of the profile the report was made under."""
        return self.data["profile"]["name"]

    @property
    def counts_for_profile(self) -> bool:
        """Whether the run's device matches its profile (else it is no evidence for that profile)."""
        return bool(self.data["profile"]["matches_device"])

    @property
    def tests_executed(self) -> int:
        """How many tests ran their body (skips and deselections excluded)."""
        return int(self.data["session"]["tests_executed"])

    def contract_hash(self, name: str) -> str | None:
        """The sha256 the report records for contract ``name``, or None when it does not cover it."""
        return next((c["sha256"] for c in self.data["contracts"] if c["name"] == name), None)

    def falsifier(self, ft_id: str) -> dict[str, Any] | None:
        """The report's entry for falsifier ``ft_id``, or None."""
        return next((f for f in self.data["falsifiers"] if f["id"] == ft_id), None)

    def summary(self) -> dict[str, Any]:
        """Where the report came from (path, profile, commit, host), for the decision's output."""
        env = self.data["environment"]
        return {
            "path": self.path,
            "profile": self.profile,
            "matches_device": self.counts_for_profile,
            "device": env["device"]["name"],
            "host": env["host"]["hostname"],
            "commit": env["git"]["commit"],
            "dirty": env["git"]["dirty"],
            "tests_executed": self.tests_executed,
            "vacuity": self.data["session"]["vacuity"],
            "created": self.data["created"],
        }


#: Largest gate report read, in bytes, and deepest nesting of its JSON.
MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_REPORT_DEPTH = 64
#: Longest integer literal of a report, in digits.
MAX_REPORT_INT_DIGITS = 30


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_REPORT_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits is out of range")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """The deepest nesting of the arrays and objects of JSON ``text`` (strings skipped)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _read_json(shown: str, path: Path) -> Any:
    """The JSON of a report file, refusing non-regular files, files over :data:`MAX_REPORT_BYTES`,
    nesting deeper than :data:`MAX_REPORT_DEPTH`, NaN, infinities and huge numbers."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ReportError(f"{shown}: cannot read the report: not a regular file")
        if info.st_size > MAX_REPORT_BYTES:
            raise ReportError(f"{shown}: report of {info.st_size} bytes is over the limit of {MAX_REPORT_BYTES}")
        with open(path, "rb") as handle:
            text = handle.read(MAX_REPORT_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise ReportError(f"{shown}: no such report file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{shown}: cannot read the report: {err}") from None
    if len(text) > MAX_REPORT_BYTES:
        raise ReportError(f"{shown}: report is over the limit of {MAX_REPORT_BYTES} bytes")
    if text.count("[") + text.count("{") > MAX_REPORT_DEPTH and _depth(text) > MAX_REPORT_DEPTH:
        raise ReportError(f"{shown}: not a gate report: JSON nested deeper than {MAX_REPORT_DEPTH} levels")
    try:
        return json.loads(text, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise ReportError(f"{shown}:{err.lineno}:{err.colno}: not JSON: {err.msg}") from None
    except (ValueError, RecursionError) as err:
        raise ReportError(f"{shown}: not a gate report: {err}") from None


def load_report(path: str | Path) -> Report:
    """Read one report; ReportError when unreadable, invalid against the schema, or edited."""
    shown = str(path)
    data = _read_json(shown, Path(path))
    problems = schema_problems(data)
    if problems:
        raise ReportError(
            f"{shown}: not a valid gate report (schema/gate-report.schema.json): " + "; ".join(problems)
        )
    if not is_intact(data):
        raise ReportError(
            f"{shown}: integrity check failed: the content's sha256 is {content_digest(data)[:16]}..., "
            f"the report records {data['integrity']['digest'][:16]}...; the report was edited after "
            "it was written. Refusing it: rerun the tests to get a genuine report."
        )
    return Report(shown, data)


def check_contract_hashes(reports: Sequence[Report], contracts: Sequence[ContractInfo]) -> None:
    """ReportError naming the contract when a report was made from another version of it."""
    by_name = {c.name: c for c in contracts}
    for report in reports:
        for entry in report.data["contracts"]:
            contract = by_name.get(entry["name"])
            if contract is not None and contract.sha256 != entry["sha256"]:
                raise ReportError(
                    f"{report.path}: contract {contract.name} has sha256 {entry['sha256'][:16]}... in the "
                    f"report but {contract.sha256[:16]}... in {contract.path}: the report was made from "
                    "another version of the contract; rerun the tests against this one"
                )


# --- the decision -------------------------------------------------------------------------


@dataclass
class RequirementResult:
    """How one ``qa_gate.require`` entry (a falsifier on its profiles) fared."""

    falsifier: str
    profiles: list[str]
    status: str
    detail: str


@dataclass
class ContractGate:
    """The gate of one contract: its verdict, the reasons for it, and what it rests on."""

    contract: str
    gate: str | None
    path: str
    verdict: str = PASS
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requirements: list[RequirementResult] = field(default_factory=list)
    obligations: dict[str, str] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        """Fail the gate for ``reason`` (reasons accumulate)."""
        self.verdict = FAIL
        self.reasons.append(reason)


@dataclass
class GateDecision:
    """Every contract's gate from a set of reports, and the problems with the reports themselves."""

    release: bool
    scope: list[str] | None
    reports: list[dict[str, Any]]
    problems: list[str]
    gates: list[ContractGate]

    @property
    def passed(self) -> bool:
        """No problem with the reports, and every contract's gate passed."""
        return not self.problems and all(g.verdict == PASS for g in self.gates)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": PASS if self.passed else FAIL,
            "release": self.release,
            "scope": self.scope,
            "reports": self.reports,
            "problems": self.problems,
            "gates": [asdict(g) for g in self.gates],
        }


def _report_problems(reports: Sequence[Report], release: bool) -> list[str]:
    problems = [
        f"{r.path}: zero tests executed: this run is evidence of nothing"
        for r in reports
        if r.tests_executed == 0
    ]
    problems += [
        f"{r.path}: collection error in {error['nodeid']}: {error['message']}"
        for r in reports
        for error in r.data["session"]["collection_errors"]
    ]
    problems += [
        f"{r.path}: profile {r.profile} was chosen but does not match the device it ran on "
        f"({r.data['environment']['device']['name']}); its results count for no profile"
        for r in reports
        if not r.counts_for_profile
    ]
    if release:
        commits = {r.data["environment"]["git"]["commit"] for r in reports}
        if None in commits:
            problems.append("a release needs reports from a known git commit; some report has none")
        elif len(commits) > 1:
            problems.append("reports come from different commits: " + ", ".join(sorted(c[:12] for c in commits)))
        problems += [
            f"{r.path}: made from a working tree with uncommitted changes"
            for r in reports
            if r.data["environment"]["git"]["dirty"]
        ]
    return problems


def _describe(entry: dict[str, Any] | None, report: Report) -> str:
    where = f"on {report.profile} ({report.path})"
    if entry is None:
        return f"absent {where}"
    if entry["status"] != F_PASSED:
        return f"{entry['status']} {where}: {entry['reason']}"
    if not report.counts_for_profile:
        return f"passed {where}, but that run's device does not match profile {report.profile}"
    mutants = entry["mutants"]
    if not mutants:
        return f"passed {where}, but its mutants were not run (run with --pv-vacuity)"
    unkilled = [m for m in mutants if m["status"] != KILLED]
    if unkilled:
        m = unkilled[0]
        return f"passed {where}, but mutant {m['mutant']} was {m['status']}: {m['detail']}"
    return f"passed {where}, {len(mutants)} mutant run(s) killed"


def _satisfied(entry: dict[str, Any] | None, report: Report) -> bool:
    return (
        entry is not None
        and entry["status"] == F_PASSED
        and report.counts_for_profile
        and bool(entry["mutants"])
        and all(m["status"] == KILLED for m in entry["mutants"])
    )


def _requirement(req: Requirement, reports: Sequence[Report], scope: set[str] | None) -> RequirementResult:
    wanted = [p for p in req.profiles if scope is None or p in scope]
    names = "|".join(req.profiles)
    if not wanted:
        return RequirementResult(
            req.falsifier, list(req.profiles), OUT_OF_SCOPE,
            f"required on {names}; no report from those profiles here (the release gate decides it)",
        )
    candidates = [r for r in reports if r.profile in wanted]
    if not candidates:
        return RequirementResult(
            req.falsifier, list(req.profiles), UNMET, f"required on {names}: no report from any of them"
        )
    for report in candidates:
        entry = report.falsifier(req.falsifier)
        if _satisfied(entry, report):
            return RequirementResult(req.falsifier, list(req.profiles), MET, _describe(entry, report))
    details = "; ".join(_describe(report.falsifier(req.falsifier), report) for report in candidates)
    return RequirementResult(req.falsifier, list(req.profiles), UNMET, f"required on {names}: {details}")


def _obligation_status(
    contract: ContractInfo, obligation: str, reports: Sequence[Report]
) -> tuple[str, str]:
    verdicts = [
        v
        for report in reports
        for entry in report.data["obligations"]
        if entry["contract"] == contract.name and entry["obligation"] == obligation
        for v in entry["verdicts"]
    ]
    status = combine_verdicts(v["status"] for v in verdicts)
    if status == NOT_RUN:
        return status, "no verdict in any report (run the contracts' checks: pytest contracts)"
    deciding = next((v for v in verdicts if v["status"] == status), verdicts[0])
    detail = str(deciding.get("detail") or "").strip().splitlines()
    return status, f"{deciding['engine']}: {detail[0][:200] if detail else status}"


def _negative_results(contract: ContractInfo, reports: Sequence[Report]) -> dict[str, list[str]]:
    """Falsifier id -> why it failed, was vacuous or errored, over every report."""
    found: dict[str, list[str]] = {}
    for ft_id in contract.falsifiers:
        for report in reports:
            entry = report.falsifier(ft_id)
            if entry is not None and entry["status"] in _NEGATIVE_FALSIFIER:
                found.setdefault(ft_id, []).append(
                    f"{ft_id}: {entry['status']} on {report.profile} ({report.path}): {entry['reason']}"
                )
    return found


def _unrequired_notes(contract: ContractInfo, reports: Sequence[Report]) -> list[str]:
    """Falsifiers no requirement names that passed nowhere (not a failure: a note)."""
    required = {req.falsifier for req in contract.requirements}
    notes = []
    for ft_id in contract.falsifiers:
        found = [(r, e) for r in reports if (e := r.falsifier(ft_id)) is not None]
        if ft_id in required or any(e["status"] == F_PASSED for _, e in found):
            continue
        seen = "; ".join(f"{e['status']} on {r.profile}: {e['reason']}" for r, e in found) or "in no report"
        notes.append(f"{ft_id} (not required) passed nowhere: {seen}")
    return notes


def _gate_contract(
    contract: ContractInfo, reports: Sequence[Report], scope: set[str] | None, release: bool
) -> ContractGate:
    gate = ContractGate(contract.name, contract.gate_id, contract.path)
    own = [r for r in reports if r.contract_hash(contract.name) == contract.sha256]
    if not own:
        gate.fail("no report covers this version of the contract")
        return gate
    if contract.gate_id is None or not contract.requirements:
        message = "qa_gate requires no falsifier (qa_gate.require), so nothing is evidence for it"
        if release:
            gate.fail(message)
        else:
            gate.notes.append(message)
    negative = _negative_results(contract, own)
    for reasons in negative.values():
        for reason in reasons:
            gate.fail(reason)
    for req in contract.requirements:
        result = _requirement(req, own, scope)
        gate.requirements.append(result)
        if result.status == UNMET and req.falsifier not in negative:
            gate.fail(f"{req.falsifier}: {result.detail}")
        elif result.status == OUT_OF_SCOPE:
            gate.notes.append(f"{req.falsifier}: {result.detail}")
    gate.notes += _unrequired_notes(contract, own)
    if contract.compile_error:
        gate.fail(f"the contract's checks do not compile: {contract.compile_error}")
    checked = set(contract.checked_obligations)
    for obligation in contract.checked_obligations:
        status, detail = _obligation_status(contract, obligation, own)
        gate.obligations[obligation] = status
        if status not in _SUCCESS_OBLIGATION:
            gate.fail(f"obligation {obligation}: {status}: {detail}")
    unchecked = [ob for ob in contract.obligations if ob not in checked]
    if unchecked:
        gate.notes.append(f"{len(unchecked)} obligation(s) without an executable check: {', '.join(unchecked)}")
    return gate


def decide(reports: Sequence[Report], contracts: Sequence[ContractInfo], *, release: bool) -> GateDecision:
    """Each contract's gate, and the report-level problems, from intact reports of these contracts."""
    if not reports:
        raise UserError("no gate report given")
    if not contracts:
        raise UserError("no contract to gate")
    check_contract_hashes(reports, contracts)
    scope = None if release else {r.profile for r in reports}
    return GateDecision(
        release=release,
        scope=None if scope is None else sorted(scope),
        reports=[r.summary() for r in reports],
        problems=_report_problems(reports, release),
        gates=[_gate_contract(c, reports, scope, release) for c in contracts],
    )

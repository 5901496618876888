"""The gate: decide each contract's ``qa_gate`` and the release from gate reports.

A report is evidence only when it is accepted:

- it reads, validates against the schema, repeats no id, and its checksum and
  (when signed) its signature match its content; otherwise it is refused
  outright (``ReportError``);
- its profile is one pv knows (``pv.evidence.profiles.known_profiles``), with
  the content hash recorded in the report, and the device the report records
  matches that profile's device class and ``detect`` rule (a report that
  claims an H200 from a CPU host counts for nothing);
- for a release, it is signed by a trusted key (``pv.attest``) and bound to the commit released.

A contract's gate passes only when, in the accepted reports made from exactly
this version of the contract (same sha256):

- every falsifier of ``qa_gate.require`` passed on a profile its entry names
  and killed every mutant it names (``--pv-vacuity``): a skip, a deselection,
  a missing run or an unshown vacuity check is never a pass, and a requirement
  that no accepted report can decide fails as "no evidence";
- no falsifier of the contract failed, was vacuous or errored in any report;
- every obligation with an executable check is ``proved`` or ``passed``, and
  every obligation that falsifiers decide (``falsification_tests[].obligation``)
  is ``passed``: each falsifier naming it passed and killed its mutants in some
  report (without ``release``, one required only on other profiles is deferred);
- with ``qa_gate.min_mutation_score``, a report's ``mutation`` section is
  present, complete, not stale, and has at least that score.

Scope: with ``release=True`` every requirement is decided, and all reports
must come from one clean commit. Without it (``pv verify`` gates the profile
it ran on) the gate is the gate for the profiles of the accepted reports: a
requirement on other profiles only is deferred to the release, and a contract
none of whose requirements names one of those profiles fails, since the run
decided nothing of it. A gate that requires no falsifier fails in both modes.
A report of zero tests or with collection errors fails the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv.checks.verdicts import Status
from pv.evidence.build import combine_verdicts
from pv.evidence.contracts import ContractInfo, Requirement
from pv.evidence.integrity import checksum_matches, content_digest
from pv.evidence.profiles import DeviceFacts, Profile, device_class_of, known_profiles
from pv.attest.envelopes import GATE_REPORT, SignatureCheck, SignatureStatus, file_subjects, only, read_bundle
from pv.attest.inputs import InputRule, Tree, differences
from pv.attest.keys import TrustedKeys, trusted_keys
from pv.evidence.mutation_evidence import MutationEvidence, mutation_shortfall, score_text
from pv.evidence.report_schema import duplicate_problems, schema_problems
from pv.evidence.statuses import FalsifierStatus, GateVerdict, MutantStatus, RequirementStatus


class ReportError(UserError):
    """A gate report that cannot be read, is invalid, was edited, or does not match the contracts."""


@dataclass
class Report:
    """One gate report, read, validated, its checksum and signature checked."""

    path: str
    data: dict[str, Any]
    signature: SignatureCheck
    #: why the report is evidence of nothing (filled by the gate; empty: accepted)
    refusals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._falsifiers = {entry["id"]: entry for entry in self.data["falsifiers"]}

    @property
    def profile(self) -> str:
        """The name of the profile the report was made under."""
        return self.data["profile"]["name"]

    @property
    def accepted(self) -> bool:
        """Whether the report counts as evidence."""
        return not self.refusals

    @property
    def tests_executed(self) -> int:
        """How many tests ran their body (skips and deselections excluded)."""
        return int(self.data["session"]["tests_executed"])

    @property
    def device(self) -> DeviceFacts:
        """The device the report says it ran on, as profile detection sees it."""
        device = self.data["environment"]["device"]
        return DeviceFacts(cuda=device["kind"] == "cuda", name=device["name"], unified=device["unified"])

    def contract_hash(self, name: str) -> str | None:
        """The sha256 the report records for contract ``name``, or None when it does not cover it."""
        return next((c["sha256"] for c in self.data["contracts"] if c["name"] == name), None)

    def falsifier(self, ft_id: str) -> dict[str, Any] | None:
        """The report's entry for falsifier ``ft_id`` (ids are unique), or None."""
        return self._falsifiers.get(ft_id)

    def summary(self) -> dict[str, Any]:
        """Where the report came from and whether it counts, for the decision's output."""
        env = self.data["environment"]
        return {
            "path": self.path,
            "profile": self.profile,
            "device": env["device"]["name"],
            "host": env["host"]["hostname"],
            "commit": env["git"]["commit"],
            "dirty": env["git"]["dirty"],
            "cleanroom": env["git"]["cleanroom"],
            "tests_executed": self.tests_executed,
            "vacuity": self.data["session"]["vacuity"],
            "created": self.data["created"],
            "signature": self.signature.status,
            "key_id": self.signature.key_id,
            "accepted": self.accepted,
            "refusals": list(self.refusals),
        }


def load_report(path: str | Path, trusted: TrustedKeys | None = None) -> Report:
    """Read one evidence bundle's gate report; ReportError when unreadable, oversized, not a DSSE bundle of
    in-toto statements, invalid, repeating an id, edited, or badly signed.

    ``trusted``: the keys its signature is checked against (default: ``trusted_keys()``).
    """
    shown = str(path)
    attestation = only(read_bundle(path, trusted_keys() if trusted is None else trusted), GATE_REPORT, shown)
    data = attestation.predicate
    problems = schema_problems(data)
    if not problems:
        problems = duplicate_problems(data)
    if problems:
        raise ReportError(
            f"{shown}: not a valid gate report (pv.schemas/gate-report.schema.json): " + "; ".join(problems)
        )
    if not checksum_matches(data):
        raise ReportError(
            f"{shown}: checksum mismatch: the content's sha256 is {content_digest(data)[:16]}..., "
            f"the report records {data['checksum']['digest'][:16]}...; the report was edited or "
            "corrupted after it was written. Refusing it: rerun the tests to get a genuine report."
        )
    if attestation.statement["subject"] != file_subjects(data["inputs"]["files"]):
        raise ReportError(f"{shown}: the statement's subjects are not the report's input files")
    return Report(shown, data, attestation.signature)


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


# --- which reports count --------------------------------------------------------------------


def _profile_refusals(report: Report, known: Mapping[str, Profile]) -> list[str]:
    """Why ``report`` is no evidence under the profile it names (empty: it is)."""
    recorded = report.data["profile"]
    profile = known.get(report.profile)
    if profile is None:
        names = ", ".join(sorted(known)) or "none"
        return [f"profile {report.profile!r} is not a profile pv knows (known: {names}); "
                "a report counts only under a known profile"]
    if recorded["sha256"] != profile.sha256:
        return [f"made under an edited profile {profile.name}: its sha256 is {recorded['sha256'][:16]}..., "
                f"pv's profile {profile.name} ({profile.path}) has {profile.sha256[:16]}...; "
                "rerun with the profile as pv knows it"]
    found = []
    differing = [f"{key} {recorded[key]!r} (pv's: {value!r})"
                 for key, value in profile.to_json().items() if recorded.get(key) != value]
    if differing:
        found.append(f"records profile {profile.name} with other values: {', '.join(differing)}")
    device = report.device
    ran_on = device_class_of(device)
    if ran_on != profile.device_class or not profile.matches(device):
        found.append(
            f"claims profile {profile.name} ({profile.device_class}: {profile.describe_detect()}) but ran on "
            f"{report.data['environment']['device']['name']!r} ({ran_on}); its results count for no profile"
        )
    return found


def _signature_refusals(report: Report) -> list[str]:
    """For a release: the report must be signed by a trusted key."""
    status = report.signature.status
    if status is SignatureStatus.UNSIGNED:
        return ["unsigned: a release accepts only reports signed by a trusted key "
                "(`pv key generate` on the host that runs the tests; its public key among the trusted keys)"]
    if status is SignatureStatus.UNKNOWN_KEY:
        return [f"{report.signature.detail}: a release accepts only reports signed by a trusted key"]
    return []


def _binding_refusals(report: Report, tree: Tree) -> list[str]:
    """For a release: the report must be a clean-room run of a clean tree, on exactly the inputs ``tree`` holds."""
    git = report.data["environment"]["git"]
    inputs = report.data["inputs"]
    found = []
    if not git["cleanroom"]:
        found.append("not a clean-room run (pv verify runs the tests in a fresh export of the commit; "
                     "a plain pytest run in a working tree can be changed by ignored or compiled files)")
    if git["dirty"] is not False:
        found.append("made from a working tree with uncommitted changes" if git["dirty"]
                     else "made outside a git commit")
    found += [f"used {what}, outside the project" for what in inputs["outside"]]
    changed = differences(inputs["files"], tree, InputRule.from_json(inputs["rule"]))
    if changed:
        found.append(f"its inputs are not those of {tree.describe()}: {'; '.join(changed)}")
    return found


def judge_reports(reports: Sequence[Report], known: Mapping[str, Profile], tree: Tree | None) -> None:
    """Fill each report's ``refusals``: unknown or edited profile, another device; for a release
    (``tree``: what is released) no trusted signature, or other inputs than the tree's."""
    for report in reports:
        report.refusals = _profile_refusals(report, known)
        if tree is not None:
            report.refusals += _signature_refusals(report) + _binding_refusals(report, tree)


# --- the decision -------------------------------------------------------------------------


@dataclass
class RequirementResult:
    """How one ``qa_gate.require`` entry (a falsifier on its profiles) fared, and which report decided it."""

    falsifier: str
    profiles: list[str]
    status: RequirementStatus
    detail: str
    #: the report that met it, or whose results failed it (None: no report could decide it)
    report: str | None = None


@dataclass
class MutationResult:
    """How ``qa_gate.min_mutation_score`` fared, and which report decided it."""

    min_score: float
    met: bool
    detail: str
    #: the report that met it, or whose mutation section failed it (None: no single report decides it)
    report: str | None = None


@dataclass
class ContractGate:
    """The gate of one contract: its verdict, the reasons for it, and what it rests on."""

    contract: str
    gate: str | None
    path: str
    verdict: GateVerdict = GateVerdict.PASS
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requirements: list[RequirementResult] = field(default_factory=list)
    obligations: dict[str, Status] = field(default_factory=dict)
    #: the result of ``qa_gate.min_mutation_score`` (None: the gate asks for no mutation score)
    mutation: MutationResult | None = None

    def fail(self, reason: str) -> None:
        """Fail the gate for ``reason`` (reasons accumulate)."""
        self.verdict = GateVerdict.FAIL
        self.reasons.append(reason)


@dataclass
class GateDecision:
    """Every contract's gate from a set of reports, and the problems with the reports themselves."""

    release: bool
    scope: list[str] | None
    #: what a release was decided on (``commit abc123...``), None for a gate of profiles
    subject: str | None
    reports: list[dict[str, Any]]
    problems: list[str]
    gates: list[ContractGate]

    @property
    def verdict(self) -> GateVerdict:
        """Fail on any problem with the reports, else the worst of the gates."""
        if self.problems:
            return GateVerdict.FAIL
        return GateVerdict.first((g.verdict for g in self.gates), GateVerdict.PASS)

    @property
    def passed(self) -> bool:
        """No problem with the reports, and every contract's gate passed."""
        return self.verdict is GateVerdict.PASS

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "release": self.release,
            "scope": self.scope,
            "subject": self.subject,
            "reports": self.reports,
            "problems": self.problems,
            "gates": [asdict(g) for g in self.gates],
        }


def _report_problems(reports: Sequence[Report]) -> list[str]:
    problems = [f"{r.path}: refused: {why}" for r in reports for why in r.refusals]
    problems += [
        f"{r.path}: zero tests executed: this run is evidence of nothing"
        for r in reports
        if r.tests_executed == 0
    ]
    problems += [
        f"{r.path}: collection error in {error['nodeid']}: {error['message']}"
        for r in reports
        for error in r.data["session"]["collection_errors"]
    ]
    return problems


def _describe(entry: dict[str, Any] | None, report: Report) -> str:
    where = f"on {report.profile} ({report.path})"
    if entry is None:
        return f"absent {where}"
    if entry["status"] != FalsifierStatus.PASSED:
        return f"{entry['status']} {where}: {entry['reason']}"
    mutants = entry["mutants"]
    if not mutants:
        return f"passed {where}, but its mutants were not run (run with --pv-vacuity)"
    unkilled = [m for m in mutants if m["status"] != MutantStatus.KILLED]
    if unkilled:
        m = min(unkilled, key=lambda m: MutantStatus(m["status"]))
        return f"passed {where}, but mutant {m['mutant']} was {m['status']}: {m['detail']}"
    return f"passed {where}, {len(mutants)} mutant run(s) killed"


def _satisfied(entry: dict[str, Any] | None) -> bool:
    return (
        entry is not None
        and entry["status"] == FalsifierStatus.PASSED
        and bool(entry["mutants"])
        and all(m["status"] == MutantStatus.KILLED for m in entry["mutants"])
    )


def _requirement(req: Requirement, reports: Sequence[Report], scope: set[str] | None) -> RequirementResult:
    names = "|".join(req.profiles)

    def result(status: RequirementStatus, detail: str, report: Report | None = None) -> RequirementResult:
        return RequirementResult(req.falsifier, list(req.profiles), status, detail,
                                 None if report is None else report.path)

    if scope is not None and not scope.intersection(req.profiles):
        return result(RequirementStatus.DEFERRED,
                      f"required on {names}; deferred: a gate for profile(s) {', '.join(sorted(scope))} "
                      "does not decide it (pv gate --release does)")
    candidates = [r for r in reports if r.profile in req.profiles]
    if not candidates:
        return result(RequirementStatus.UNMET,
                      f"no evidence: required on {names}, and no accepted report comes from any of them")
    for report in candidates:
        entry = report.falsifier(req.falsifier)
        if _satisfied(entry):
            return result(RequirementStatus.MET, _describe(entry, report), report)
    details = "; ".join(_describe(report.falsifier(req.falsifier), report) for report in candidates)
    deciding = candidates[0] if len(candidates) == 1 else None
    return result(RequirementStatus.UNMET, f"required on {names}: {details}", deciding)


def _obligation_status(
    contract: ContractInfo, obligation: str, reports: Sequence[Report]
) -> tuple[Status, str]:
    verdicts = [
        v
        for report in reports
        for entry in report.data["obligations"]
        if entry["contract"] == contract.name and entry["obligation"] == obligation
        for v in entry["verdicts"]
    ]
    status = combine_verdicts(v["status"] for v in verdicts)
    if status is Status.NOT_RUN:
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
            if entry is not None and FalsifierStatus(entry["status"]) <= FalsifierStatus.VACUOUS:
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
        if ft_id in required or any(e["status"] == FalsifierStatus.PASSED for _, e in found):
            continue
        seen = "; ".join(f"{e['status']} on {r.profile}: {e['reason']}" for r, e in found) or "in no report"
        notes.append(f"{ft_id} (not required) passed nowhere: {seen}")
    return notes


def _gate_requirements(gate: ContractGate, contract: ContractInfo, own: Sequence[Report],
                       scope: set[str] | None) -> None:
    if not contract.requirements:
        gate.fail("no evidence: qa_gate requires no falsifier (qa_gate.require), so nothing is evidence for it")
        return
    negative = _negative_results(contract, own)
    for reasons in negative.values():
        for reason in reasons:
            gate.fail(reason)
    for req in contract.requirements:
        result = _requirement(req, own, scope)
        gate.requirements.append(result)
        if result.status is RequirementStatus.UNMET and req.falsifier not in negative:
            gate.fail(f"{req.falsifier}: {result.detail}")
    if all(r.status is RequirementStatus.DEFERRED for r in gate.requirements):
        named = sorted({p for req in contract.requirements for p in req.profiles})
        gate.fail(f"no evidence: no requirement of this gate names profile(s) {', '.join(sorted(scope or ()))} "
                  f"(they name {', '.join(named)}), so these reports decide nothing of it")


def _mutation(contract: ContractInfo, evidence: MutationEvidence | None, release: bool) -> MutationResult:
    """``qa_gate.min_mutation_score``: met when the project's mutation evidence shows it."""
    assert contract.min_mutation_score is not None
    min_score = contract.min_mutation_score
    where = evidence.path if evidence is not None else None
    shortfall = mutation_shortfall(evidence, min_score, contract.modules, release)
    if shortfall is not None:
        return MutationResult(min_score, False, shortfall, where)
    assert evidence is not None and evidence.score is not None
    return MutationResult(min_score, True, f"score {score_text(evidence.score)} >= {score_text(min_score)} in "
                                           f"{where} ({evidence.describe_counts()})", where)


def _gate_contract(
    contract: ContractInfo, reports: Sequence[Report], scope: set[str] | None, mutation: MutationEvidence | None
) -> ContractGate:
    gate = ContractGate(contract.name, contract.gate_id, contract.path)
    own = [r for r in reports if r.contract_hash(contract.name) == contract.sha256]
    if not own:
        gate.fail("no evidence: no accepted report covers this version of the contract")
        return gate
    _gate_requirements(gate, contract, own, scope)
    if contract.min_mutation_score is not None:
        gate.mutation = _mutation(contract, mutation, release=scope is None)
        if not gate.mutation.met:
            gate.fail(f"min_mutation_score {score_text(contract.min_mutation_score)}: {gate.mutation.detail}")
    gate.notes += _unrequired_notes(contract, own)
    if contract.compile_error:
        gate.fail(f"the contract's checks do not compile: {contract.compile_error}")
    _gate_obligations(gate, contract, own, scope)
    return gate


def _gate_obligations(gate: ContractGate, contract: ContractInfo, own: Sequence[Report],
                      scope: set[str] | None) -> None:
    """Each obligation by its executable check and by the falsifiers that name it: all must succeed."""
    checked = set(contract.checked_obligations)
    unchecked = []
    for obligation in contract.obligations:
        results = []
        if obligation in checked:
            results.append(_obligation_status(contract, obligation, own))
        falsifiers = contract.obligation_falsifiers.get(obligation, [])
        for ft_id in falsifiers:
            deferred = _deferred(contract, ft_id, scope)
            if deferred:
                gate.notes.append(f"obligation {obligation}: {deferred}")
            else:
                results.append(_falsifier_decides(ft_id, own))
        if not results:
            if not falsifiers:
                unchecked.append(obligation)
            continue
        status, detail = next((r for r in results if not r[0].is_success), results[0])
        gate.obligations[obligation] = status
        if not status.is_success:
            gate.fail(f"obligation {obligation}: {status}: {detail}")
        elif falsifiers and obligation not in checked:
            gate.notes.append(f"obligation {obligation}: {status}: {'; '.join(d for _, d in results)}")
    if unchecked:
        gate.notes.append(f"{len(unchecked)} obligation(s) without an executable check or a falsifier "
                          f"deciding them: {', '.join(unchecked)}")


#: the status of an obligation that a falsifier decides, by the falsifier's status (else not-run)
_BY_FALSIFIER = {FalsifierStatus.FAILED: Status.REFUTED, FalsifierStatus.ERROR: Status.ERROR,
                 FalsifierStatus.VACUOUS: Status.VACUOUS}


def _falsifier_decides(ft_id: str, reports: Sequence[Report]) -> tuple[Status, str]:
    """An obligation decided by falsifier ``ft_id``: passed where it passed and killed its mutants."""
    entries = [(report, report.falsifier(ft_id)) for report in reports]
    for report, entry in entries:
        if _satisfied(entry):
            return Status.PASSED, f"decided by falsifier {ft_id}: {_describe(entry, report)}"
    statuses = [_BY_FALSIFIER.get(FalsifierStatus(e["status"]), Status.NOT_RUN) for _, e in entries if e]
    status = min(statuses, default=Status.NOT_RUN)
    details = "; ".join(_describe(entry, report) for report, entry in entries) or "in no accepted report"
    return status, f"decided by falsifier {ft_id}: {details}"


def _deferred(contract: ContractInfo, ft_id: str, scope: set[str] | None) -> str | None:
    """Why falsifier ``ft_id`` is not judged by a gate for ``scope`` (None: it is): its requirement
    names only other profiles."""
    if scope is None:
        return None
    profiles = {p for req in contract.requirements if req.falsifier == ft_id for p in req.profiles}
    if not profiles or scope & profiles:
        return None
    return (f"decided by falsifier {ft_id}, required on {'|'.join(sorted(profiles))}; "
            "deferred to the release gate")


def decide(
    reports: Sequence[Report],
    contracts: Sequence[ContractInfo],
    *,
    release: bool,
    known: Mapping[str, Profile] | None = None,
    tree: Tree | None = None,
    mutation: MutationEvidence | None = None,
) -> GateDecision:
    """Each contract's gate, and the report-level problems, from loaded reports of these contracts.

    ``known``: the profiles a report may be judged under (default: ``known_profiles()``);
    ``tree``: for a release, what is released (a report on other inputs is refused);
    ``mutation``: the project's mutation evidence, bound to the same tree.
    """
    if not reports:
        raise UserError("no gate report given")
    if not contracts:
        raise UserError("no contract to gate")
    if release and tree is None:
        raise UserError("a release is decided on a tree: name the commit released")
    check_contract_hashes(reports, contracts)
    judge_reports(reports, known_profiles() if known is None else known, tree if release else None)
    accepted = [r for r in reports if r.accepted]
    scope = None if release else {r.profile for r in accepted}
    return GateDecision(
        release=release,
        scope=None if scope is None else sorted(scope),
        subject=tree.describe() if release and tree is not None else None,
        reports=[r.summary() for r in reports],
        problems=_report_problems(reports),
        gates=[_gate_contract(c, accepted, scope, mutation) for c in contracts],
    )

"""A gate decision as text, JSON, Markdown or JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from pv.attest.envelopes import SignatureStatus
from pv.evidence.statuses import GateVerdict, RequirementStatus

if TYPE_CHECKING:
    from pv.evidence.gate import ContractGate, GateDecision, RequirementResult


def _headline(decision: "GateDecision") -> str:
    verdict = "PASS" if decision.passed else "FAIL"
    failed = sum(g.verdict is not GateVerdict.PASS for g in decision.gates)
    counts = f"{len(decision.gates) - failed} of {len(decision.gates)} gates pass"
    if decision.release:
        return f"release of {decision.subject}: {verdict} ({counts})"
    scope = ", ".join(decision.scope or []) or "none"
    return (
        f"gate for profile(s) {scope}: {verdict} ({counts}); requirements on other profiles are "
        "decided by `pv gate --release` over reports from every required profile"
    )


_SIGNATURE_WORDS = {
    SignatureStatus.TRUSTED: "signed by trusted key {key}",
    SignatureStatus.UNKNOWN_KEY: "signed by untrusted key {key}",
    SignatureStatus.UNSIGNED: "unsigned",
}


def _report_line(summary: dict) -> str:
    commit = (summary["commit"] or "unknown")[:12] + (" dirty" if summary["dirty"] else "") + (
        ", clean room" if summary["cleanroom"] else "")
    refused = "" if summary["accepted"] else " (REFUSED)"
    vacuity = "with mutants" if summary["vacuity"] else "without mutants"
    signature = _SIGNATURE_WORDS[summary["signature"]].format(key=(summary["key_id"] or "")[:16])
    return (
        f"{summary['path']}{refused}: profile {summary['profile']}, {summary['device']} on "
        f"{summary['host']}, commit {commit}, {summary['tests_executed']} tests executed {vacuity}, {signature}"
    )


def _decided_by(result: "RequirementResult") -> str:
    profiles = "|".join(result.profiles)
    if result.status is RequirementStatus.MET:
        return f"{result.falsifier} on {profiles}: met, decided by {result.report}"
    if result.status is RequirementStatus.DEFERRED:
        return f"{result.falsifier} on {profiles}: deferred to the release gate"
    decided = f"decided by {result.report}" if result.report else "no report decides it"
    return f"{result.falsifier} on {profiles}: unmet, {decided}"


def _mutation_decided_by(gate: "ContractGate") -> list[str]:
    """The mutation score line of a gate that asks for one (empty: it asks for none)."""
    result = gate.mutation
    if result is None:
        return []
    decided = f"decided by {result.report}" if result.report else "no mutation evidence decides it"
    return [f"mutation score >= {result.min_score:g}: {'met' if result.met else 'unmet'}, {decided}"]


def _requirement_lines(gate: "ContractGate") -> list[str]:
    lines = [f"    requirement: {_decided_by(r)}" for r in gate.requirements]
    return lines + [f"    requirement: {line}" for line in _mutation_decided_by(gate)]


def format_text(decision: "GateDecision") -> str:
    """Reports, one row per gate with its reasons and notes, then the verdict."""
    lines = [f"pv gate ({'release' if decision.release else 'profile'} mode) over {len(decision.reports)} report(s):"]
    lines += [f"  {_report_line(s)}" for s in decision.reports]
    lines += [f"problem: {p}" for p in decision.problems]
    lines.append("")
    width = max([len(g.contract) for g in decision.gates] + [8])
    gate_width = max([len(g.gate or "-") for g in decision.gates] + [4])
    lines.append(f"{'contract':<{width}}  {'gate':<{gate_width}}  verdict")
    for gate in decision.gates:
        lines.append(f"{gate.contract:<{width}}  {gate.gate or '-':<{gate_width}}  {gate.verdict.upper()}")
        lines += _requirement_lines(gate)
        lines += [f"    - {reason}" for reason in gate.reasons]
        lines += [f"    note: {note}" for note in gate.notes]
    lines += ["", _headline(decision)]
    return "\n".join(lines) + "\n"


def format_json(decision: "GateDecision") -> str:
    """The decision as indented JSON, ending in a newline."""
    return json.dumps(decision.to_json(), indent=1, ensure_ascii=False) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(decision: "GateDecision") -> str:
    """A table of gates and a list of reasons, for a CI job summary or a pull request."""
    lines = [f"## pv gate: {'PASS' if decision.passed else 'FAIL'}", "", _md(_headline(decision)), ""]
    lines += [f"- {_md(_report_line(s))}" for s in decision.reports]
    lines += [f"- **problem:** {_md(p)}" for p in decision.problems]
    lines += ["", "| contract | gate | verdict | why | requirements |", "|---|---|---|---|---|"]
    for gate in decision.gates:
        why = "<br>".join(_md(r) for r in gate.reasons) or "-"
        decided = [_decided_by(r) for r in gate.requirements] + _mutation_decided_by(gate)
        decided = "<br>".join(_md(line) for line in decided) or "-"
        lines.append(f"| {gate.contract} | {gate.gate or '-'} | {gate.verdict.upper()} | {why} | {decided} |")
    notes = [f"- {gate.contract}: {_md(n)}" for gate in decision.gates for n in gate.notes]
    if notes:
        lines += ["", "<details><summary>notes</summary>", "", *notes, "", "</details>"]
    return "\n".join(lines) + "\n"


def format_junit(decision: "GateDecision") -> str:
    """One test case per contract gate (plus one for report problems), failures with their reasons."""
    suite = ET.Element("testsuite", name="pv gate", tests=str(len(decision.gates) + 1))
    failures = 0
    cases = [("reports", "reports", decision.problems)]
    cases += [(g.contract, g.gate or g.contract, g.reasons) for g in decision.gates]
    for classname, name, reasons in cases:
        case = ET.SubElement(suite, "testcase", classname=f"pv.evidence.gate.{classname}", name=name)
        if reasons:
            failures += 1
            failure = ET.SubElement(case, "failure", message=reasons[0])
            failure.text = "\n".join(reasons)
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


FORMATTERS: dict[str, Callable[["GateDecision"], str]] = {
    "text": format_text,
    "json": format_json,
    "markdown": format_markdown,
    "junit": format_junit,
}

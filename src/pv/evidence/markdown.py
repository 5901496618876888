"""A short Markdown summary of one gate report, for a CI job summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pv.checks.verdicts import Status
from pv.evidence.statuses import FalsifierStatus, MutantStatus

_REASON_WIDTH = 160


def _cell(text: Any) -> str:
    shown = str(text).replace("|", "\\|").replace("\n", " ")
    return shown if len(shown) <= _REASON_WIDTH else shown[: _REASON_WIDTH - 3] + "..."


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counter.items())) or "none"


def _mutation_line(section: dict[str, Any] | None) -> str:
    if section is None or section["status"] != "present":
        return f"Mutation evidence: none ({_cell(section['reason']) if section else 'not recorded'})."
    score = "-" if section["score"] is None else f"{section['score']:.3f}"
    state = ", ".join(word for word, on in (("stale", section["stale"]), ("incomplete", not section["complete"]))
                      if on)
    return (f"Mutation score {score} (`{section['report']}`: {section['killed']} killed, {section['survived']} "
            f"survived, {section['timeout']} timeout, {section['equivalent']} equivalent)"
            + (f"; {state}." if state else "."))


def session_markdown(report: dict[str, Any]) -> str:
    """Headline, one row per falsifier, obligation counts, and why anything did not pass."""
    session, env, profile = report["session"], report["environment"], report["profile"]
    git = env["git"]
    commit = (git["commit"] or "unknown")[:12] + (" (dirty)" if git["dirty"] else "")
    device = env["device"]
    outcomes = {k: v for k, v in session["outcomes"].items() if v}
    lines = [
        f"## pv gate report: profile `{profile['name']}`",
        "",
        f"**{session['tests_executed']} tests executed** ({_counts(Counter(outcomes))}); "
        f"commit `{commit}`; device: {_cell(device['name'])}; pytest exit status {session['pytest_exitstatus']}",
        "",
    ]
    if session["tests_executed"] == 0:
        lines += ["> **Zero tests executed: this run is evidence of nothing.**", ""]
    if not profile["matches_device"]:
        lines += [f"> Profile `{profile['name']}` was chosen but does not match this device.", ""]
    lines += ["| falsifier | contract | status | tests | mutants killed | time (s) |", "|---|---|---|---|---|---|"]
    for entry in report["falsifiers"]:
        killed = sum(m["status"] == MutantStatus.KILLED for m in entry["mutants"])
        lines.append(
            f"| {entry['id']} | {entry['contract'] or '-'} | {entry['status']} | "
            f"{len(entry['tests'])} | {killed}/{len(entry['mutants'])} | {entry['duration_s']:.2f} |"
        )
    obligations = Counter(entry["status"] for entry in report["obligations"])
    lines += ["", f"Obligations: {_counts(obligations)}.", "", _mutation_line(report.get("mutation"))]
    problems = [e for e in report["falsifiers"] if e["status"] != FalsifierStatus.PASSED]
    problems_ob = [e for e in report["obligations"] if e["checked"] and not Status(e["status"]).is_success]
    if problems or problems_ob:
        lines += ["", "### Not passed", ""]
        lines += [f"- {e['id']}: {e['status']}: {_cell(e['reason'])}" for e in problems]
        lines += [f"- {e['contract']} {e['obligation']}: {e['status']}" for e in problems_ob]
    return "\n".join(lines) + "\n"

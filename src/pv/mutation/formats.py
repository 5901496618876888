"""The report as a person reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pv.mutation.generation import Site, unified_diff
from pv.mutation.results import ERROR, NO_COVERAGE, SURVIVED, TIMEOUT


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def site_of(mutant: Mapping[str, Any]) -> Site:
    """The place and replacement text of one mutant of a ``--format json`` report."""
    return Site(0, mutant["operator"], mutant["scope"], mutant["line"], mutant["line"], False,
                *mutant["change"].split(" -> ", 1), 0, tuple(mutant["span"]), mutant["replacement"])


def mutant_diff(mutant: Mapping[str, Any], source: str, path: str) -> str:
    """One mutant of a report as a unified diff of its module's ``source``."""
    return unified_diff(source, site_of(mutant), path)


def format_table(data: dict[str, Any], sources: Mapping[str, str] | None = None) -> str:
    """Per module: generated, killed, survived, no coverage, timed out, equivalent, error, score; then the
    details, with each survivor's diff where ``sources`` (module name -> text mutated) are given."""
    header: tuple[str, ...] = ("module", "generated", "killed", "survived", "no_coverage", "timeout", "equivalent",
                               "error")
    header += ("not_run", "score") if data.get("not_run") else ("score",)
    header += ("estimated",) if data.get("sample") else ()
    total = {"module": "total", **{key: data.get(key, 0) for key in (
        "generated", "killed", "survived", "no_coverage", "timeout", "error", "not_run")},
             "equivalent": len(data["equivalent"]), "score": data["score"], "estimate": data.get("estimate")}
    cells = [[_score_text(row[h]) if h == "score" else _estimate_text(row.get("estimate")) if h == "estimated"
              else str(row[h]) for h in header] for row in [*data["modules"], total]]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [header, *cells]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    for status in (SURVIVED, NO_COVERAGE, TIMEOUT, ERROR):
        chosen = [m for m in data["mutants"] if m["status"] == status]
        if chosen:
            lines += ["", f"{status}:"]
        for m in chosen:
            lines.append(f"  {m['key']}  line {m['line']}: {m['change']}"
                         + (f"  ({m['detail']})" if status not in (SURVIVED, NO_COVERAGE) else ""))
            if sources and status in (SURVIVED, NO_COVERAGE) and m["module"] in sources and "span" in m:
                diff = mutant_diff(m, sources[m["module"]], m["module"].replace(".", "/") + ".py")
                lines += ["    " + line for line in diff.splitlines()]
    if data["equivalent"]:
        lines += ["", "equivalent (reviewed):"]
        lines += [f"  {e['key']}: {e['change']}: {e['reason']}" for e in data["equivalent"]]
    if data["stale_equivalents"]:
        lines += ["", "stale equivalents:"] + [f"  {problem}" for problem in data["stale_equivalents"]]
    not_run = "" if data.get("complete", True) or data.get("sample") else f"; {data['not_run']} not run yet"
    not_run += f"; {data['reused']} results reused from an earlier run" if data.get("reused") else ""
    lines += ["", f"score {_score_text(data['score'])} = killed {data['killed']} / (killed + survived "
                  f"{data['survived']} + no coverage {data.get('no_coverage', 0)}); "
                  f"the shared format's score (timeouts detected) {_score_text(data.get('standard_score'))}; "
                  f"{data['generated']} mutants in {data['wall_seconds']:.0f} s with "
                  f"{data['workers']} workers (first run {data['first_run_seconds']:.0f} s){not_run}"]
    if data.get("sample"):
        lines.append(_sample_line(data["sample"], data.get("estimate")))
    return "\n".join(lines)


def _estimate_text(estimate: dict[str, Any] | None) -> str:
    if estimate is None:
        return "-"
    return f"{_score_text(estimate['score'])} ({_score_text(estimate['low'])}-{_score_text(estimate['high'])})"


def _sample_line(sample: dict[str, Any], estimate: dict[str, Any] | None) -> str:
    drawn = (f"a random sample (seed {sample['seed']}) of {sample['size']} of the {sample['frame']} mutants a test "
             f"reaches ran, the others did not")
    if estimate is None:
        return drawn + "; no sampled mutant decided yet"
    return (drawn + f"; estimated score {_score_text(estimate['score'])} (95% interval "
            f"{_score_text(estimate['low'])} to {_score_text(estimate['high'])}: {estimate['killed']} of "
            f"{estimate['decided']} sampled mutants killed, {estimate['finished']} finished, and the "
            f"{estimate['no_coverage']} no test reaches counted as they are)")

"""The report as a person reads it."""

from __future__ import annotations

from typing import Any

from pv.mutation.results import ERROR, SURVIVED, TIMEOUT


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def format_table(data: dict[str, Any]) -> str:
    """Per module: generated, killed, survived, timed out, equivalent, error, score; then the details."""
    header: tuple[str, ...] = ("module", "generated", "killed", "survived", "timeout", "equivalent", "error")
    header += ("not_run", "score") if data.get("not_run") else ("score",)
    total = {"module": "total", **{key: data.get(key, 0) for key in (
        "generated", "killed", "survived", "timeout", "error", "not_run")},
             "equivalent": len(data["equivalent"]), "score": data["score"]}
    cells = [[_score_text(row[h]) if h == "score" else str(row[h]) for h in header]
             for row in [*data["modules"], total]]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [header, *cells]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    for status in (SURVIVED, TIMEOUT, ERROR):
        chosen = [m for m in data["mutants"] if m["status"] == status]
        if chosen:
            lines += ["", f"{status}:"]
            lines += [f"  {m['key']}  line {m['line']}: {m['change']}"
                      + (f"  ({m['detail']})" if status != SURVIVED or not m["tests_selected"] else "")
                      for m in chosen]
    if data["equivalent"]:
        lines += ["", "equivalent (reviewed):"]
        lines += [f"  {e['key']}: {e['change']}: {e['reason']}" for e in data["equivalent"]]
    if data["stale_equivalents"]:
        lines += ["", "stale equivalents:"] + [f"  {problem}" for problem in data["stale_equivalents"]]
    not_run = "" if data.get("complete", True) else f"; {data['not_run']} not run yet"
    lines += ["", f"score {_score_text(data['score'])} = killed {data['killed']} / (killed + survived "
                  f"{data['survived']}); {data['generated']} mutants in {data['wall_seconds']:.0f} s with "
                  f"{data['workers']} workers (first run {data['first_run_seconds']:.0f} s){not_run}"]
    return "\n".join(lines)

"""The report as one self-contained HTML page: counts per file, then every mutant with its diff.

The page has no external resource (no script, font or style from the
network): it opens from disk in any browser. Survivors and mutants no test
reaches come first and open by default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from html import escape
from typing import Any

from pv.mutation.formats import mutant_diff
from pv.mutation.results import EQUIVALENT, ERROR, KILLED, NO_COVERAGE, NOT_RUN, STATUSES, SURVIVED, TIMEOUT

#: the order mutants are listed in: what needs a person's attention first
_ORDER = (SURVIVED, NO_COVERAGE, TIMEOUT, ERROR, NOT_RUN, EQUIVALENT, KILLED)

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
details { margin: 4px 0; border-left: 4px solid #999; padding-left: 8px; }
details.survived, details.no-coverage { border-color: #c62828; } details.killed { border-color: #2e7d32; }
details.timeout, details.error { border-color: #ef6c00; } details.equivalent { border-color: #777; }
summary { cursor: pointer; font-family: monospace; }
pre { background: #f6f6f6; padding: 6px; overflow-x: auto; }
.add { color: #2e7d32; } .del { color: #c62828; } .hunk { color: #6a1b9a; }
"""


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else (
            "del" if line.startswith("-") else "")
        lines.append(f'<span class="{kind}">{escape(line)}</span>' if kind else escape(line))
    return "\n".join(lines)


def html_page(data: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """The ``--format json`` report ``data`` as a page; ``sources``: each module's text as mutated."""
    score = "-" if data["score"] is None else f"{data['score']:.3f}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>pv mutate: score {score}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>pv mutate: score {score}</h1>",
             f"<p>{escape(str(data['generated']))} mutants; pv's score = killed / (killed + survived + no coverage); "
             f"the shared format's score (timeouts detected): "
             f"{'-' if data.get('standard_score') is None else format(data['standard_score'], '.3f')}.</p>",
             "<table><tr><th>file</th>" + "".join(f"<th>{s}</th>" for s in STATUSES) + "</tr>"]
    for module, path in sorted(data["files"].items(), key=lambda item: item[1]):
        counts = Counter(m["status"] for m in data["mutants"] if m["module"] == module)
        parts.append(f"<tr><td>{escape(path)}</td>" + "".join(f"<td>{counts[s]}</td>" for s in STATUSES) + "</tr>")
    parts.append("</table>")
    reasons = {entry["key"]: entry["reason"] for entry in data["equivalent"]}
    for module, path in sorted(data["files"].items(), key=lambda item: item[1]):
        parts.append(f"<h2>{escape(path)}</h2>")
        chosen = sorted((m for m in data["mutants"] if m["module"] == module),
                        key=lambda m: (_ORDER.index(m["status"]), m["line"]))
        for m in chosen:
            opened = " open" if m["status"] in (SURVIVED, NO_COVERAGE) else ""
            why = reasons.get(m["key"]) if m["status"] == EQUIVALENT else (
                f"by {m['killed_by']}" if m.get("killed_by") else m.get("detail", ""))
            parts.append(
                f"<details class='{escape(m['status'])}'{opened}><summary>{escape(m['status'])} "
                f"{escape(m['key'])} line {m['line']}: {escape(m['change'])}</summary>"
                f"<p>{escape(why or '')}</p><pre>{_diff_html(mutant_diff(m, sources[module], path))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

"""A run's report: counts, score, stale equivalents, the files it judged; rescoring a saved report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv import __version__
from pv._util.files import sha256_of
from pv.attest.inputs import InputRule
from pv.mutation.equivalents import Equivalent, of_modules
from pv.mutation.formats import format_table
from pv.mutation.results import (
    EQUIVALENT, ERROR, KILLED, NO_COVERAGE, NOT_RUN, STATUSES, SURVIVED, TIMEOUT, UNDETECTED, Mutant, counted, score,
    standard_score,
)
from pv.mutation.sampling import estimate
from pv.mutation.selection import Baseline


@dataclass
class MutationReport:
    mutants: list[Mutant]
    equivalents: dict[str, Equivalent]
    baseline: Baseline
    wall_seconds: float
    workers: int
    #: what the run judged (:func:`judged_files`), taken before any mutant ran
    judged: dict[str, Any] = field(default_factory=dict)
    #: judged files whose bytes changed while the run went on (the report describes the text read at the start)
    changed: list[str] = field(default_factory=list)
    #: every file the result depends on (:func:`pv.mutation.inputs.run_inputs`), read before any mutant ran
    inputs: dict[str, str] = field(default_factory=dict)
    #: the rule that selected them
    input_rule: InputRule = field(default_factory=InputRule)
    #: each mutated module's file, relative to the project root
    files: dict[str, str] = field(default_factory=dict)
    #: the random sample the run was restricted to (seed, size, frame), or None
    sample: dict[str, int] | None = None

    def status(self, mutant: Mutant) -> str:
        return counted(mutant, self.equivalents)

    def counts(self, module: str | None = None) -> Counter[str]:
        return Counter(self.status(m) for m in self.mutants if module is None or m.module == module)

    @staticmethod
    def score_of(counts: Counter[str]) -> float | None:
        return score(counts)

    def stale_equivalents(self) -> list[str]:
        """Entries that no longer describe a surviving mutant of the current code."""
        by_key = {m.key: m for m in self.mutants}
        problems = []
        for key, entry in sorted(of_modules(self.equivalents, {m.module for m in self.mutants}).items()):
            mutant = by_key.get(key)
            if mutant is None:
                problems.append(f"{key}: no such mutant in the current code")
            elif mutant.site.change != entry.change:
                problems.append(f"{key}: listed as {entry.change!r}, the mutant now is {mutant.site.change!r}")
            elif mutant.status not in (*UNDETECTED, EQUIVALENT):
                problems.append(f"{key}: listed as equivalent but {mutant.status}"
                                + (f" by {mutant.killed_by}" if mutant.killed_by else ""))
        return problems

    def baseline_problems(self) -> list[str]:
        failed = [t for t, e in self.baseline.tests.items() if e["outcome"] == "failed"]
        return [f"{test}: fails unmutated (not used to kill mutants)" for test in failed]

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``judged``: the files it judged, with their sha256)."""
        counts = self.counts()
        modules = sorted({m.module for m in self.mutants})
        mutants = [m.to_json() | {"status": self.status(m), "ran_as": m.status} for m in self.mutants]
        sampled = {} if self.sample is None else {"sample": self.sample, "estimate": estimate(mutants)}
        return {
            "tool": f"pv {__version__}",
            "judged": self.judged,
            "inputs": {"rule": self.input_rule.to_json(), "files": self.inputs, "outside": []},
            "files": self.files,
            "complete": counts[NOT_RUN] == 0,
            "not_run": counts[NOT_RUN],
            "killed": counts[KILLED], "survived": counts[SURVIVED], "no_coverage": counts[NO_COVERAGE],
            "timeout": counts[TIMEOUT], "error": counts[ERROR],
            "equivalent": [{"key": m.key, "change": m.site.change, "reason": self.equivalents[m.key].reason}
                           for m in self.mutants if self.status(m) == EQUIVALENT],
            "generated": len(self.mutants),
            "reused": sum(m.reused for m in self.mutants),
            "score": self.score_of(counts),
            "standard_score": standard_score(counts),
            "killed_by": dict(Counter(m.kind for m in self.mutants if self.status(m) == KILLED)),
            "wall_seconds": round(self.wall_seconds, 1),
            "first_run_seconds": round(self.baseline.seconds, 1),
            "workers": self.workers,
            "tests": {"passed": len(self.baseline.passed()),
                      "not_used": sorted(t for t, e in self.baseline.tests.items() if e["outcome"] != "passed")},
            "modules": [self._module_row(module, mutants) for module in modules],
            "stale_equivalents": self.stale_equivalents(),
            **sampled,
            "mutants": mutants,
        }

    def _module_row(self, module: str, mutants: list[dict[str, Any]]) -> dict[str, Any]:
        counts = self.counts(module)
        estimated = {} if self.sample is None else {
            "estimate": estimate([m for m in mutants if m["module"] == module])}
        return {"module": module, "generated": sum(counts.values()),
                **{status.replace("-", "_"): counts[status] for status in STATUSES}, "not_run": counts[NOT_RUN],
                "score": self.score_of(counts), **estimated}

    def sources(self) -> dict[str, str]:
        """The text each mutated module was mutated from, by module name."""
        return {m.module: m.source for m in self.mutants}

    def table(self) -> str:
        """The report as text (see :func:`format_table`), survivors with their diffs."""
        return format_table(self.to_json(), self.sources())


def judged_files(sources: Iterable[Path], root: Path, equivalents_path: Path | None) -> dict[str, Any]:
    """Path (relative to ``root`` where it is below it) and sha256 of every mutated source file and of the
    equivalents file (sha256 None when it does not exist): a later reader can tell whether the score still
    describes the code."""
    judged: dict[str, Any] = {"sources": [_judged_file(path, root) for path in sorted(set(sources))]}
    if equivalents_path is not None:
        judged["equivalents"] = _judged_file(equivalents_path, root)
    return judged


def _judged_file(path: Path, root: Path) -> dict[str, Any]:
    root = root.resolve()
    path = (root / path).resolve()
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = path.as_posix()
    return {"path": shown, "sha256": sha256_of(path)}



def rescore(data: dict[str, Any], equivalents: dict[str, Equivalent],
            equivalents_path: Path | None = None) -> dict[str, Any]:
    """A report of ``pv mutate --format json`` judged again under a (newly reviewed) equivalents file.

    With ``equivalents_path`` (that file, relative to the working directory), the report's ``judged``
    entry names it and its sha256 in place of the file of the first run.
    """
    mutants = []
    for entry in data["mutants"]:
        ran = entry.get("ran_as", entry["status"])  # what the run found, before any equivalents
        if ran == EQUIVALENT:
            ran = NO_COVERAGE if entry.get("tests_selected", 1) == 0 else SURVIVED
        listed = equivalents.get(entry["key"])
        status = EQUIVALENT if ran in UNDETECTED and listed is not None and listed.change == entry["change"] else ran
        mutants.append({**entry, "status": status, "ran_as": ran})
    stale = []
    by_key = {m["key"]: m for m in mutants}
    for key, listed in sorted(of_modules(equivalents, {m["module"] for m in mutants}).items()):
        found = by_key.get(key)
        if found is None:
            stale.append(f"{key}: no such mutant in the current code")
        elif found["change"] != listed.change:
            stale.append(f"{key}: listed as {listed.change!r}, the mutant now is {found['change']!r}")
        elif found["ran_as"] not in UNDETECTED:
            stale.append(f"{key}: listed as equivalent but {found['ran_as']}")

    def counts_of(rows: list[dict[str, Any]]) -> Counter[str]:
        return Counter(row["status"] for row in rows)

    def row_of(module: str) -> dict[str, Any]:
        rows = [m for m in mutants if m["module"] == module]
        counts = counts_of(rows)
        return {"module": module, "generated": sum(counts.values()), **{st.replace("-", "_"): counts[st] for st in STATUSES},
                "not_run": counts[NOT_RUN], "score": MutationReport.score_of(counts),
                **({"estimate": estimate(rows)} if data.get("sample") else {})}

    counts = counts_of(mutants)
    order = list(dict.fromkeys(m["module"] for m in mutants))
    return {**data, "killed": counts[KILLED], "survived": counts[SURVIVED], "no_coverage": counts[NO_COVERAGE],
            "timeout": counts[TIMEOUT], "error": counts[ERROR], "not_run": counts[NOT_RUN],
            "score": score(counts), "standard_score": standard_score(counts),
            "equivalent": [{"key": m["key"], "change": m["change"], "reason": equivalents[m["key"]].reason}
                           for m in mutants if m["status"] == EQUIVALENT],
            "modules": [row_of(module) for module in sorted(order)], "stale_equivalents": stale,
            "mutants": mutants, **_rejudged(data, equivalents_path),
            **({"estimate": estimate(mutants)} if data.get("sample") else {})}


def _rejudged(data: dict[str, Any], equivalents_path: Path | None) -> dict[str, Any]:
    if equivalents_path is None or not isinstance(data.get("judged"), dict):
        return {}
    return {"judged": {**data["judged"], "equivalents": _judged_file(equivalents_path, Path.cwd())}}


def report_problems(report: MutationReport, min_score: float | None) -> list[str]:
    """Why the run fails (empty: it passes): a score under the minimum, stale equivalents, broken tests."""
    problems = report.stale_equivalents() + report.baseline_problems()
    problems += [f"{path} changed while pv mutate ran: run it again on files that stay put"
                 for path in report.changed]
    if not report.baseline.passed():
        problems.append("no test passed unmutated: nothing can kill a mutant")
    score = report.score_of(report.counts())
    if min_score is not None and (score is None or score < min_score):
        problems.append(f"mutation score {'-' if score is None else f'{score:.3f}'} is below the minimum {min_score}")
    return problems

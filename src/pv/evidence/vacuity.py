"""Vacuity: proof that every falsifier can fail.

A falsifier names the planted defects ("mutants") of the code it checks. Run
with ``pytest --pv-vacuity``, each falsifier runs once unmutated and once per
mutant with the mutant applied; a mutant run passes when the falsifier fails
("killed") and fails when the falsifier still passes ("survived": the
falsifier is vacuous). This module holds what both sides share: the property
names a mutant run records, the log the pytest side writes, the verdict over
all runs, and the runner behind ``pv vacuity``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pv._util.files import write_atomic
from pv._util.progress import read_counts
from pv._util.properties import decode_property
from pv.evidence.statuses import MutantStatus

#: user_properties entry of an executed mutant run (read by the gate report):
#: ``{"falsifier": FT-id, "mutant": name, "killed": bool}`` plus ``test`` and ``detail``.
MUTANT_PROPERTY = "pv_mutant"
#: user_properties entry of every item of a vacuity run, mutated or not:
#: ``{"test": key shared by a test's runs, "falsifiers": [FT-id...], "mutant": name | None}``.
ITEM_PROPERTY = "pv_vacuity"
#: parametrize id of the unmutated run, and the prefix of a mutant run's id.
BASELINE_ID = "unmutated"
MUTANT_ID_PREFIX = "mutant="

_OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def mutant_id(name: str | None) -> str:
    """The parametrize id of a run with mutant ``name`` (None: the unmutated run)."""
    return BASELINE_ID if name is None else MUTANT_ID_PREFIX + name


def run_key(nodeid: str, name: str | None) -> str:
    """The node id of a test with its vacuity id replaced by ``*``: shared by all its runs."""
    return nodeid.replace(mutant_id(name), "*", 1)


@dataclass
class ItemRun:
    """The outcome of one item of a vacuity run (a mutant run's outcome is already inverted)."""

    test: str
    falsifiers: list[str]
    mutant: str | None
    outcome: str = "passed"
    detail: str = ""
    #: the exception a mutant run ended in that is no kill (``Type: message``; "" when none)
    crashed: str = ""


class VacuityLog:
    """pytest plugin (on the controller): folds the reports of a vacuity run, writes them as JSON."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.runs: dict[tuple[str, str | None], ItemRun] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Fold one phase report (setup, call, teardown) into the run of its item."""
        item = _property(report.user_properties, ITEM_PROPERTY)
        if item is None:
            return
        run = self.runs.setdefault(
            (item["test"], item["mutant"]),
            ItemRun(item["test"], list(item["falsifiers"]), item["mutant"]),
        )
        outcome = report.outcome
        if outcome == "failed" and report.when != "call":
            outcome = "error"
        mutant = _property(report.user_properties, MUTANT_PROPERTY) if report.when == "call" else None
        if mutant is not None:
            run.detail = mutant.get("detail", "")
            run.crashed = mutant.get("crashed") or ""
        if _OUTCOME_RANK[outcome] >= _OUTCOME_RANK[run.outcome] and outcome != "passed":
            run.outcome = outcome
            run.detail = run.detail if mutant is not None else _detail(report)

    def pytest_sessionfinish(self) -> None:
        data = {"runs": [asdict(run) for run in self.runs.values()]}
        write_atomic(self.path, json.dumps(data, indent=1))


def _property(properties: Iterable[tuple[str, Any]], name: str) -> Any:
    return next((decode_property(value) for key, value in properties if key == name), None)


def _detail(report: Any) -> str:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    text = str(report.longrepr or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --- the verdict ---------------------------------------------------------------------------

_BY_OUTCOME = {
    "passed": MutantStatus.KILLED, "failed": MutantStatus.SURVIVED,
    "skipped": MutantStatus.SKIPPED, "error": MutantStatus.ERROR,
}


@dataclass(frozen=True)
class Row:
    """One falsifier x mutant result. ``unproven``: the unmutated falsifier did not pass."""

    falsifier: str
    test: str
    mutant: str
    status: MutantStatus
    detail: str = ""


@dataclass
class VacuityResult:
    rows: list[Row] = field(default_factory=list)
    #: tests whose unmutated run did not pass: test -> outcome and detail
    baseline_failures: dict[str, str] = field(default_factory=dict)

    @property
    def executed(self) -> int:
        return sum(row.status in (MutantStatus.KILLED, MutantStatus.SURVIVED) for row in self.rows)

    def problems(self) -> list[str]:
        """Why the run does not show every falsifier able to fail (empty: it does)."""
        found = [f"{row.falsifier} {row.test}: mutant {row.mutant} {row.status}"
                 + (f" ({row.detail})" if row.detail else "")
                 for row in self.rows if row.status is not MutantStatus.KILLED]
        found += [f"{test}: unmutated run {why}" for test, why in self.baseline_failures.items()]
        if self.executed == 0:
            found.append("no mutant run was executed")
        return found


def result_from_runs(runs: Sequence[ItemRun]) -> VacuityResult:
    """Rows of every mutant run, judged against the unmutated run of the same test."""
    baseline = {run.test: run for run in runs if run.mutant is None}
    result = VacuityResult()
    for test, run in baseline.items():
        if run.outcome != "passed":
            result.baseline_failures[test] = f"{run.outcome}" + (f": {run.detail}" if run.detail else "")
    for run in runs:
        if run.mutant is None:
            continue
        base = baseline.get(run.test)
        status = MutantStatus.CRASHED if run.outcome == "failed" and run.crashed else _BY_OUTCOME[run.outcome]
        if status is MutantStatus.KILLED and (base is None or base.outcome != "passed"):
            status = MutantStatus.UNPROVEN
        for falsifier in run.falsifiers:
            result.rows.append(Row(falsifier, _short(run.test), run.mutant, status, run.detail))
    result.rows.sort(key=lambda row: (row.falsifier, row.test, row.mutant))
    return result


def _short(key: str) -> str:
    """``falsifiers/test_ft_kd.py::test_value[*]`` -> ``test_ft_kd.py::test_value``."""
    name = key.rsplit("/", 1)[-1]
    return name.replace("[*]", "").replace("[*-", "[").replace("-*]", "]").replace("-*-", "-")


def format_table(result: VacuityResult) -> str:
    """A fixed-width table: falsifier, test, mutant, status."""
    header = ("falsifier", "test", "mutant", "result")
    lines = [(row.falsifier, row.test, row.mutant, row.status) for row in result.rows]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(3)]
    out = []
    for cells in [header, *lines]:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + "  " + cells[3])
    out.insert(1, "-" * len(out[0]))
    shown = (MutantStatus.KILLED, MutantStatus.SURVIVED, MutantStatus.CRASHED, MutantStatus.SKIPPED, MutantStatus.ERROR,
             MutantStatus.UNPROVEN)
    counts = {status: sum(row.status is status for row in result.rows) for status in shown}
    falsifiers = len({row.falsifier for row in result.rows})
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status is MutantStatus.KILLED)
    out.append(f"{falsifiers} falsifiers, {len(result.rows)} mutant runs: {summary}")
    return "\n".join(out)


# --- the runner -----------------------------------------------------------------------------


@dataclass
class PytestRun:
    exit_code: int
    output: str
    result: VacuityResult


#: seconds between two looks at the running pytest's progress
POLL_S = 0.25


def run_vacuity(paths: Sequence[str], markexpr: str | None = None, workers: int | None = None,
                extra_args: Sequence[str] = (),
                on_progress: Callable[[int, int], None] | None = None) -> PytestRun:
    """Run pytest on ``paths`` with ``--pv-vacuity`` in a subprocess and judge its log;
    ``on_progress(done, total)`` hears the items finished so far (``total`` 0 until collected)."""
    with tempfile.TemporaryDirectory(prefix="pv-vacuity-") as tmp:
        log, counts, output = Path(tmp) / "vacuity.json", Path(tmp) / "progress", Path(tmp) / "output"
        command = [sys.executable, "-m", "pytest", *paths, "--pv-vacuity", f"--pv-vacuity-log={log}",
                   "-p", "pv.plugins.progress", f"--pv-progress-file={counts}",
                   "-q", "-p", "no:cacheprovider", *extra_args]
        if markexpr:
            command += ["-m", markexpr]
        if workers is not None:
            command += ["-n", str(workers)]
        with open(output, "w+", encoding="utf-8", errors="replace") as sink:
            proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, text=True)
            while proc.poll() is None:
                if on_progress is not None:
                    on_progress(*read_counts(counts))
                time.sleep(POLL_S)
            if on_progress is not None:
                on_progress(*read_counts(counts))
            sink.seek(0)
            text = sink.read()
        runs = [ItemRun(**run) for run in json.loads(log.read_text())["runs"]] if log.exists() else []
    return PytestRun(proc.returncode, text, result_from_runs(runs))

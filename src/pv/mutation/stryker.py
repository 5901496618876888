"""The report in the mutation-testing ecosystem's shared format (``mutation-testing-report-schema`` 1.x).

Stryker, PIT, Infection and others write it; its HTML viewer, badges and
dashboards read it. pv's statuses map onto it as: killed -> ``Killed``,
survived -> ``Survived``, no-coverage -> ``NoCoverage``, timeout -> ``Timeout``,
error -> ``RuntimeError``, a reviewed equivalent -> ``Ignored`` (with its reason),
not yet run -> ``Pending``. Locations are 1-based lines and columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pv import __version__
from pv.mutation.results import EQUIVALENT, ERROR, KILLED, NO_COVERAGE, NOT_RUN, SURVIVED, TIMEOUT

SCHEMA_VERSION = "1"
#: the format's coloring thresholds (percent of its own score)
THRESHOLDS = {"high": 80, "low": 60}
STATUS_NAMES = {KILLED: "Killed", SURVIVED: "Survived", NO_COVERAGE: "NoCoverage", TIMEOUT: "Timeout",
                ERROR: "RuntimeError", EQUIVALENT: "Ignored", NOT_RUN: "Pending"}


def _mutant(entry: Mapping[str, Any], reasons: Mapping[str, str]) -> dict[str, Any]:
    line, col, end_line, end_col = entry["span"]
    found: dict[str, Any] = {
        "id": entry["key"],
        "mutatorName": entry["operator"],
        "replacement": entry["replacement"],
        "description": entry["change"],
        "location": {"start": {"line": line, "column": col + 1}, "end": {"line": end_line, "column": end_col + 1}},
        "status": STATUS_NAMES[entry["status"]],
        "coveredBy": list(entry.get("covered_by", [])),
        "static": entry.get("applied") == "imported",
    }
    if entry.get("killed_by") and entry["status"] == KILLED:
        found["killedBy"] = [entry["killed_by"]]
    reason = reasons.get(entry["key"]) if entry["status"] == EQUIVALENT else entry.get("detail")
    if reason:
        found["statusReason"] = reason
    if entry.get("seconds"):
        found["duration"] = round(entry["seconds"] * 1000)
    return found


def _test_files(mutants: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Every test a mutant names (covered or killed by), grouped by its file."""
    tests = sorted({test for m in mutants for test in [*m.get("covered_by", []), *filter(None, [m.get("killed_by")])]})
    files: dict[str, list[dict[str, str]]] = {}
    for test in tests:
        path, _, name = test.partition("::")
        files.setdefault(path, []).append({"id": test, "name": name or test})
    return {path: {"tests": found} for path, found in files.items()}


def stryker_report(data: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, Any]:
    """The ``--format json`` report ``data`` in the shared format; ``sources``: each module's text as mutated."""
    reasons = {entry["key"]: entry["reason"] for entry in data["equivalent"]}
    files: dict[str, Any] = {}
    for module, path in sorted(data["files"].items(), key=lambda item: item[1]):
        files[path] = {"language": "python", "source": sources[module],
                       "mutants": [_mutant(m, reasons) for m in data["mutants"] if m["module"] == module]}
    return {
        "schemaVersion": SCHEMA_VERSION,
        "thresholds": THRESHOLDS,
        "files": files,
        "testFiles": _test_files(data["mutants"]),
        "framework": {"name": "pv", "version": __version__},
        "performance": {"setup": 0, "initialRun": round(data["first_run_seconds"] * 1000),
                        "mutation": round((data["wall_seconds"] - data["first_run_seconds"]) * 1000)},
        "config": {"pv_score": data["score"], "standard_score": data.get("standard_score"), "inputs": data["inputs"]},
    }

"""Output formats of ``pv validate``: text, JSON, SARIF 2.1.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pv import __version__
from pv.contracts.findings import Finding, Severity

if TYPE_CHECKING:
    from pv.contracts.validate import ValidationResult

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(result: ValidationResult, fmt: str) -> str:
    """The findings of a ``ValidationResult`` in ``fmt`` (one of :data:`FORMATS`), ending in a newline."""
    findings = result.all_findings()
    if fmt == "text":
        return "".join(f.format_text() + "\n" for f in findings)
    if fmt == "json":
        return json.dumps({
            "tool": "pv", "version": __version__,
            "files": result.files, "errors": result.errors, "warnings": result.warnings,
            "findings": [f.to_json() for f in findings],
        }, indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(sarif(findings), indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def summary(result: ValidationResult) -> str:
    """``N files: E errors, W warnings``."""
    return f"{result.files} files: {result.errors} errors, {result.warnings} warnings"


def rule_table() -> dict[str, tuple[str, Severity]]:
    """id -> (summary, default severity) of every rule, the loader's included."""
    from pv.contracts.loading import LOADER_RULES
    from pv.contracts.rules.registry import all_rules
    from pv.contracts.validate import INTERNAL

    table = {rule_id: (text, Severity.ERROR) for rule_id, text in LOADER_RULES.items()}
    table[INTERNAL] = ("a rule failed on this input (a defect of pv)", Severity.ERROR)
    table.update({r.id: (r.summary, r.severity) for r in all_rules()})
    return dict(sorted(table.items()))


def _uri(path: str) -> str:
    """A relative URI for a path under the working folder, else a file URI."""
    from urllib.parse import quote

    absolute = Path(path).resolve()
    try:
        return quote(absolute.relative_to(Path.cwd().resolve()).as_posix())
    except ValueError:
        return absolute.as_uri()


def sarif(findings: list[Finding]) -> dict:
    """A SARIF 2.1.0 log with one run of pv: every rule in the driver, one result per finding."""
    table = rule_table()
    index = {rule_id: i for i, rule_id in enumerate(table)}
    rules = [{
        "id": rule_id,
        "shortDescription": {"text": text},
        "defaultConfiguration": {"level": severity.value},
    } for rule_id, (text, severity) in table.items()]
    results = []
    for finding in findings:
        result = {
            "ruleId": finding.rule,
            "level": finding.severity.value,
            "message": {"text": finding.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(finding.location.path)},
                "region": {"startLine": finding.location.line, "startColumn": finding.location.col},
            }}],
        }
        if finding.rule in index:
            result["ruleIndex"] = index[finding.rule]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "pv", "version": __version__, "rules": rules}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }

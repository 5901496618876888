"""Counts of one contract's sections, its QA gate, and its validation findings.

The counts come from the file; nothing here is taken from the self-declared
``verification_summary``. Exit 0, or 1/2 when the file cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("contract", metavar="CONTRACT", help="a contract file")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def contract_status(doc: Any) -> dict[str, Any]:
    """The status of one loaded contract as plain data (counted from its :class:`~pv.contracts.view.ContractView`)."""
    from pv.contracts.findings import Severity
    from pv.contracts.validate import validate_documents
    from pv.contracts.view import document_view, thaw

    view = document_view(doc)
    findings = [f for f in validate_documents([doc]) if f.rule not in ("PV-REF-002", "PV-REF-005")]
    gate = view.qa_gate
    return {
        "contract": view.stem,
        "path": view.path,
        "version": view.version,
        "equations": len(view.equations),
        "obligations": len(view.obligations),
        "obligations_with_id": sum("id" in ob.fields for ob in view.obligations),
        "obligations_with_check": sum("check" in ob.fields for ob in view.obligations),
        "falsification_tests": len(view.falsifiers),
        "kani_harnesses": len(view.kani_harnesses),
        "depends_on": list(view.depends_on),
        "qa_gate": None if not gate or not gate.fields else {
            "id": gate.id, "name": gate.name, "checks": thaw(gate.checks),
            "require": [{"falsifier": r.falsifier, "profiles": list(r.profiles)} for r in gate.require],
        },
        "errors": sum(f.severity is Severity.ERROR for f in findings),
        "warnings": sum(f.severity is Severity.WARNING for f in findings),
    }


def _text(status: dict[str, Any]) -> str:
    lines = [
        f"contract:            {status['contract']} (version {status['version']})",
        f"path:                {status['path']}",
        f"equations:           {status['equations']}",
        f"proof obligations:   {status['obligations']} ({status['obligations_with_id']} with id, "
        f"{status['obligations_with_check']} with an executable check)",
        f"falsification tests: {status['falsification_tests']}",
        f"kani harnesses:      {status['kani_harnesses']}",
        f"depends on:          {', '.join(status['depends_on']) or '-'}",
    ]
    gate = status["qa_gate"]
    if gate is None:
        lines.append("qa gate:             none")
    else:
        lines.append(f"qa gate:             {gate['id']} ({gate['name']}); checks: {', '.join(map(str, gate['checks'])) or '-'}")
        for requirement in gate["require"]:
            lines.append(f"  requires {requirement['falsifier']} on {', '.join(requirement['profiles'])}")
    lines.append(f"validation:          {status['errors']} errors, {status['warnings']} warnings"
                 + (" (run pv validate for details)" if status["errors"] or status["warnings"] else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pv.contracts.loading import load_document

    status = contract_status(load_document(args.contract))
    print(json.dumps(status, indent=2) if args.format == "json" else _text(status))
    return 0

"""Rules over executable checks: every expression in the language, every check block sound.

Rule ids (one per kind of problem, see :mod:`pv.contracts.expr` and :mod:`pv.contracts.checkspec`):

- PV-EXPR-001 an expression that does not parse;
- PV-EXPR-002 a construct outside the language (lambda, walrus, f-string, starred, dict, ...);
- PV-EXPR-003 an attribute that is not whitelisted (every ``_`` attribute, ``__class__`` walks);
- PV-EXPR-004 a call outside the vocabulary (``__import__``, ``open``, calls through attributes);
- PV-EXPR-005 an unknown or reserved name;
- PV-EXPR-006 a check block that cannot run (unknown equation in ``call``, domain errors,
  ``raises`` without ``result``, an engine that cannot take the inputs, a missing tolerance).

Nothing is imported from ``impl/`` and nothing from the contract is executed here.
"""

from __future__ import annotations

from collections.abc import Iterable

from pv.contracts import expr
from pv.contracts.checkspec import STRUCTURE, Issue, check_issues, equation_implementations, is_contract, parse_binding

from pv.contracts.findings import Location, Severity
from pv.contracts.rules.registry import rule_family

def _read_document(doc) -> list[tuple[tuple, Issue]]:
    """(key path in the document, issue) for every problem of every check block."""
    data = doc.data
    if not is_contract(data):
        return []
    implementations = equation_implementations(data)
    found = [
        (("equations", name, "implementation"),
         Issue((), STRUCTURE, f"implementation of {name!r} must be 'module.path:function', got {value!r}"))
        for name, value in implementations.items()
        if value is not None and parse_binding(value) is None
    ]
    for index, obligation in enumerate(data["proof_obligations"]):
        if isinstance(obligation, dict) and "check" in obligation:
            issues = check_issues(obligation["check"], implementations)
            found += [(("proof_obligations", index, "check", *issue.keys), issue) for issue in issues]
    return found

def _check_issues(doc) -> list[tuple[tuple, Issue]]:
    """The issues of ``doc``, read once and kept with the document for the six rules."""
    found = doc.derived.get("check_issues")
    if found is None:
        found = doc.derived["check_issues"] = _read_document(doc)
    return found

#: rule id of each kind of problem
_RULE_OF_KIND = {
    expr.SYNTAX: "PV-EXPR-001", expr.CONSTRUCT: "PV-EXPR-002", expr.ATTRIBUTE: "PV-EXPR-003",
    expr.CALL: "PV-EXPR-004", expr.NAME: "PV-EXPR-005", STRUCTURE: "PV-EXPR-006",
}

def _findings(doc) -> Iterable[tuple[str, Location, str]]:
    for keys, issue in _check_issues(doc):
        yield _RULE_OF_KIND[issue.kind], doc.locate(*keys), issue.message

rule_family(_findings, {
    "PV-EXPR-001": (Severity.ERROR, "check expression does not parse"),
    "PV-EXPR-002": (Severity.ERROR, "check expression uses a construct outside the language"),
    "PV-EXPR-003": (Severity.ERROR, "check expression reads an attribute that is not whitelisted"),
    "PV-EXPR-004": (Severity.ERROR, "check expression calls outside the helper vocabulary and bound implementations"),
    "PV-EXPR-005": (Severity.ERROR, "check expression uses an unknown or reserved name"),
    "PV-EXPR-006": (Severity.ERROR, "check block cannot run as written"),
})

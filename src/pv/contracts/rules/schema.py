"""Schema rules: ``contract.schema.json`` of ``pv.schemas`` checked with ``jsonschema``, each error made precise.

Every ``jsonschema`` error becomes one finding at the line of the offending key
or value: unknown keys (with the closest known key), values outside an enum
(with the closest allowed value), wrong types, missing required keys, and any
other constraint of the schema. The errors of a document are computed once and
shared by the five rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pv._util.text import short
from pv.contracts.findings import Location, Severity
from pv.contracts.rules.registry import rule_family
from pv.contracts.rules.sections import suggestion

if TYPE_CHECKING:
    from pv.contracts.loading import Document

UNKNOWN_KEY = "PV-SCHEMA-001"
BAD_ENUM = "PV-SCHEMA-002"
BAD_TYPE = "PV-SCHEMA-003"
MISSING_KEY = "PV-SCHEMA-004"
CONSTRAINT = "PV-SCHEMA-005"
#: Unknown keys of one mapping that get a "did you mean" (each costs a fuzzy match).
MAX_SUGGESTIONS = 50

_TYPE_NAMES = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "null",
}


def where(path: Sequence[Any]) -> str:
    """``proof_obligations[2].applies_to`` for a key path; ``the top level`` for none."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "the top level"


def _kind_of(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true or false" if isinstance(value, bool) else "null"
    for name, test in (("a mapping", dict), ("a list", list), ("a string", str), ("an integer", int), ("a number", float)):
        if isinstance(value, test):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    return short(value)


def schema_findings(doc: Document) -> list[tuple[str, Location, str]]:
    """(rule id, location, message) for every schema error of ``doc``, computed once."""
    cached = doc.derived.get("schema")
    if cached is None:
        from pv.contracts.schema import document_kind, schema_errors

        cached = _explain_all(doc, schema_errors(doc.data, document_kind(doc.data)))
        doc.derived["schema"] = cached
    return cached


def _explain_all(doc, errors: list[Any]) -> list[tuple[str, Location, str]]:
    if not errors:
        return []
    from jsonschema.exceptions import best_match

    found: list[tuple[str, Location, str]] = []
    seen: set[tuple[str, Location, str]] = set()
    for error in errors:
        if error.context:
            error = best_match([error])
        for finding in _explain(doc, error):
            if finding not in seen:
                seen.add(finding)
                found.append(finding)
    return found


def _explain(doc, error: Any) -> Iterable[tuple[str, Location, str]]:
    path = tuple(error.absolute_path)
    keyword, instance, subschema = error.validator, error.instance, error.schema
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = subschema.get("properties", {}) if isinstance(subschema, dict) else {}
        unknown = (key for key in instance if key not in known)
        for count, key in enumerate(unknown):
            hint = suggestion(str(key), known) if count < MAX_SUGGESTIONS else ""
            yield UNKNOWN_KEY, doc.locate_key(*path, key), f"unknown key `{_short(key)}` in {where(path)}{hint}"
    elif keyword in ("enum", "const"):
        allowed = error.validator_value if keyword == "enum" else [error.validator_value]
        field = next((k for k in reversed(path) if isinstance(k, str)), "value")
        hint = suggestion(str(instance), allowed) if isinstance(instance, str) else ""
        yield BAD_ENUM, doc.locate(*path), (
            f"`{_short(instance)}` is not a valid `{field}` (one of: {', '.join(map(str, allowed))}){hint}"
        )
    elif keyword == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
        yield BAD_TYPE, doc.locate(*path), f"{where(path)} must be {names}, not {_kind_of(instance)} (`{_short(instance)}`)"
    elif keyword == "required" and isinstance(instance, dict):
        for name in error.validator_value:
            if name not in instance:
                yield MISSING_KEY, doc.locate_key(*path), f"{where(path)} is missing the required key `{name}`"
    else:
        yield CONSTRAINT, doc.locate(*path), f"{where(path)}: {error.message}"


rule_family(schema_findings, {
    UNKNOWN_KEY: (Severity.ERROR, "unknown key (a typo would silently lose the section)"),
    BAD_ENUM: (Severity.ERROR, "value outside the allowed set"),
    BAD_TYPE: (Severity.ERROR, "value of the wrong type"),
    MISSING_KEY: (Severity.ERROR, "required key missing"),
    CONSTRAINT: (Severity.ERROR, "other schema constraint violated"),
})

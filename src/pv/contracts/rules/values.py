"""Value rules: numbers in their ranges, required prose not blank."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from pv.contracts.findings import Location, Severity
from pv.contracts.rules.registry import rule
from pv.contracts.rules.sections import entries, is_contract, mapping

#: Required prose: (section, keys of each item); "*" is each item of a list or mapping section.
REQUIRED_PROSE = (
    (("metadata",), ("version", "description")),
    (("equations", "*"), ("formula",)),
    (("proof_obligations", "*"), ("property",)),
    (("falsification_tests", "*"), ("id", "rule", "prediction", "if_fails")),
    (("kani_harnesses", "*"), ("id", "obligation")),
    (("qa_gate",), ("id", "name")),
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@rule("PV-VAL-001", Severity.ERROR, "tolerance is negative, NaN or infinite")
def tolerance(doc) -> Iterable[tuple[Location, str]]:
    for index, obligation in entries(doc.data, "proof_obligations"):
        value = obligation.get("tolerance")
        if _is_number(value) and not (math.isfinite(value) and value >= 0):
            yield doc.locate("proof_obligations", index, "tolerance"), (
                f"tolerance {value!r} must be a finite number, greater than 0 (or 0 for an exact comparison)"
            )


@rule("PV-VAL-002", Severity.ERROR, "Kani bound is less than 1")
def kani_bound(doc) -> Iterable[tuple[Location, str]]:
    for index, harness in entries(doc.data, "kani_harnesses"):
        value = harness.get("bound")
        if _is_number(value) and not value >= 1:
            yield doc.locate("kani_harnesses", index, "bound"), f"bound {value!r} must be at least 1 (an unwinding of 0 checks nothing)"


def _places(data: Any, section: tuple[str, ...]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    if section[-1] != "*":
        yield section, mapping(data, *section)
        return
    container = data.get(section[0]) if isinstance(data, dict) else None
    if isinstance(container, dict):
        for name, item in container.items():
            if isinstance(item, dict):
                yield (section[0], name), item
    else:
        for index, item in entries(data, section[0]):
            yield (section[0], index), item


@rule("PV-VAL-003", Severity.ERROR, "required prose is blank")
def blank_prose(doc) -> Iterable[tuple[Location, str]]:
    if not is_contract(doc.data):
        return
    for section, keys in REQUIRED_PROSE:
        for place, item in _places(doc.data, section):
            for key in keys:
                value = item.get(key)
                if isinstance(value, str) and not value.strip():
                    yield doc.locate(*place, key), f"`{key}` is blank: it must say something"

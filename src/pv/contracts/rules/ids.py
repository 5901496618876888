"""Identifier rules: ids unique within a contract and across the validated set, in the expected formats."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from pv._util.text import short
from pv.contracts.findings import Location, Severity
from pv.contracts.rules.registry import rule
from pv.contracts.rules.sections import entries, identified, is_contract


def _ids(doc) -> list[tuple[tuple, str, str]]:
    """(key path, kind, id) of every id of ``doc``, computed once per document."""
    found = doc.derived.get("ids")
    if found is None:
        found = doc.derived["ids"] = list(identified(doc.data))
    return found

_FAMILY = r"[A-Z0-9]+(?:-[A-Z0-9]+)*-[0-9]{3}"
#: kind -> (pattern, how the format is written in a message); obligation ids are free but must start with a letter.
FORMATS = {
    "obligation": (re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,199}\Z"),
                   "a letter, then up to 199 letters, digits, '-', '_', '.' or ':'"),
    "falsifier": (re.compile(rf"(?:FT|FALSIFY)-{_FAMILY}\Z"), "FT-<FAMILY>-NNN or FALSIFY-<FAMILY>-NNN"),
    "Kani harness": (re.compile(rf"KANI-{_FAMILY}\Z"), "KANI-<FAMILY>-NNN"),
    "QA gate": (re.compile(rf"F-{_FAMILY}\Z"), "F-<FAMILY>-NNN"),
}


@rule("PV-ID-001", Severity.ERROR, "id used twice in one contract")
def duplicate_in_contract(doc) -> Iterable[tuple[Location, str]]:
    first: dict[str, tuple[tuple, str]] = {}
    for keys, kind, ident in _ids(doc):
        if ident not in first:
            first[ident] = (keys, kind)
            continue
        earlier_keys, earlier_kind = first[ident]
        yield doc.locate(*keys), (
            f"{kind} id `{ident}` is already the id of the {earlier_kind} at line {doc.locate(*earlier_keys).line}"
        )


@rule("PV-ID-002", Severity.ERROR, "id not in the expected format")
def id_format(doc) -> Iterable[tuple[Location, str]]:
    for keys, kind, ident in _ids(doc):
        if kind in FORMATS and not FORMATS[kind][0].match(ident):
            yield doc.locate(*keys), f"{kind} id `{short(ident)}` is not of the form {FORMATS[kind][1]}"


@rule("PV-ID-003", Severity.ERROR, "falsifier, Kani harness or QA gate id used by more than one contract", scope="corpus")
def duplicate_across_contracts(docs: Sequence) -> Iterable[tuple[Location, str]]:
    uses: dict[str, list[tuple]] = defaultdict(list)
    for doc in docs:
        if is_contract(doc.data):
            for keys, kind, ident in _ids(doc):
                if kind != "obligation":
                    uses[ident].append((doc, keys, kind))
    for ident, places in uses.items():
        stems = sorted({doc.stem for doc, _, _ in places})
        if len({doc.path for doc, _, _ in places}) < 2:
            continue
        for doc, keys, kind in places:
            others = ", ".join(s for s in stems if s != doc.stem) or "another file of the same name"
            yield doc.locate(*keys), f"{kind} id `{ident}` is also used in {others}"


@rule("PV-ID-004", Severity.WARNING, "proof obligation without an id")
def obligation_without_id(doc) -> Iterable[tuple[Location, str]]:
    if not is_contract(doc.data):
        return
    for index, obligation in entries(doc.data, "proof_obligations"):
        if "id" not in obligation:
            yield doc.locate("proof_obligations", index), (
                "proof obligation without `id`: no Kani harness, check or report can refer to it"
            )

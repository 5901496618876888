"""Safe access to the sections of a contract's data, whatever shape the file has.

The rules run on documents that may violate the schema; these helpers skip
whatever is not the expected shape (the schema rules report that).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pv.contracts.schema import CONTRACT, document_kind

#: Sections that hold identified items, and the kind of id each holds.
ID_SECTIONS = {
    "proof_obligations": "obligation",
    "falsification_tests": "falsifier",
    "kani_harnesses": "Kani harness",
}


def is_contract(data: Any) -> bool:
    """Whether ``data`` is read as a contract (not a binding registry)."""
    return document_kind(data) == CONTRACT


def entries(data: Any, section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, item) for each mapping in the list ``data[section]``."""
    items = data.get(section) if isinstance(data, dict) else None
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def mapping(data: Any, *keys: str) -> dict[str, Any]:
    """The mapping at ``keys`` in ``data``, or an empty one."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def identified(data: Any) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """(key path of the id, kind, id) for every string id in a contract, the QA gate's included."""
    for section, kind in ID_SECTIONS.items():
        for index, item in entries(data, section):
            if isinstance(item.get("id"), str):
                yield (section, index, "id"), kind, item["id"]
    gate_id = mapping(data, "qa_gate").get("id")
    if isinstance(gate_id, str):
        yield ("qa_gate", "id"), "QA gate", gate_id


def depends_on(data: Any) -> Iterator[tuple[int, str]]:
    """(index, stem) for each string in ``metadata.depends_on``."""
    listed = mapping(data, "metadata").get("depends_on")
    if isinstance(listed, list):
        for index, stem in enumerate(listed):
            if isinstance(stem, str):
                yield index, stem


def suggestion(word: str, candidates: Any) -> str:
    """``; did you mean `x`?`` for the closest candidate, or nothing."""
    import difflib

    close = difflib.get_close_matches(word, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.75)
    return f"; did you mean `{close[0]}`?" if close else ""

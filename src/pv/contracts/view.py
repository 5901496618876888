"""A frozen, typed view of a loaded contract, built once and read by the commands that need its parts.

:func:`contract_view` reads a document's data into :class:`ContractView`: the
sections pv interprets as typed items (equations by name; obligations,
falsifiers and Kani harnesses with the key that identifies them across
versions; the QA gate with its requirements), each keeping its whole mapping
as ``fields``, frozen (mappings read-only, lists as tuples). It reads whatever
shape the file has: a value of the wrong type is left out of the typed
attributes (validation reports it) and kept in ``fields``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pv.contracts.requirements import Requirement, parse_requirements

EMPTY: Mapping[str, Any] = MappingProxyType({})
#: The sections whose items are read as typed views, and the sections that stay plain.
ITEM_SECTIONS = ("equations", "proof_obligations", "falsification_tests", "kani_harnesses")
VIEWED_SECTIONS = (*ITEM_SECTIONS, "qa_gate", "metadata")


def freeze(value: Any) -> Any:
    """``value`` with every mapping read-only and every list a tuple, all the way down."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Plain ``dict``/``list`` data from a frozen value (for JSON)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, tuple) else ()


@dataclass(frozen=True)
class Item:
    """One identified item of a section: ``key`` matches it across versions, ``fields`` is all of it."""

    key: str
    fields: Mapping[str, Any]

    @property
    def id(self) -> str | None:
        return _text(self.fields, "id")


@dataclass(frozen=True)
class Equation(Item):
    @property
    def implementation(self) -> str | None:
        return _text(self.fields, "implementation")


@dataclass(frozen=True)
class Obligation(Item):
    @property
    def check(self) -> Mapping[str, Any] | None:
        check = self.fields.get("check")
        return check if isinstance(check, Mapping) else None


@dataclass(frozen=True)
class QaGate:
    id: str | None
    name: str | None
    checks: tuple[Any, ...]
    require: tuple[Requirement, ...]
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class ContractView:
    """A contract as typed, frozen data (see the module doc)."""

    stem: str
    path: str
    name: str | None
    version: str | None
    depends_on: tuple[str, ...]
    metadata: Mapping[str, Any]
    equations: tuple[Equation, ...]
    obligations: tuple[Obligation, ...]
    falsifiers: tuple[Item, ...]
    kani_harnesses: tuple[Item, ...]
    qa_gate: QaGate | None
    #: top-level fields outside the viewed sections (``name``, ``version``, notes, ...)
    top: Mapping[str, Any]

    def items(self, section: str) -> tuple[Item, ...]:
        """The items of one of :data:`ITEM_SECTIONS`."""
        return {"equations": self.equations, "proof_obligations": self.obligations,
                "falsification_tests": self.falsifiers, "kani_harnesses": self.kani_harnesses}[section]


def _keyed(section: str, value: Any, kind: type[Item]) -> tuple[Item, ...]:
    """Equations by name; list items by id (obligations: else by property), else ``#index``."""
    if isinstance(value, Mapping):
        return tuple(kind(str(name), body if isinstance(body, Mapping) else EMPTY) for name, body in value.items())
    items: list[Item] = []
    taken: set[str] = set()
    for index, body in enumerate(value if isinstance(value, tuple) else ()):
        fields = body if isinstance(body, Mapping) else EMPTY
        key = _text(fields, "id")
        if key is None and section == "proof_obligations":
            key = _text(fields, "property")
        key = key if key is not None and key not in taken else f"#{index}"
        taken.add(key)
        items.append(kind(key, fields))
    return tuple(items)


def _gate(value: Any, require: tuple[Requirement, ...]) -> QaGate | None:
    if not isinstance(value, Mapping):
        return None
    checks = value.get("checks")
    return QaGate(_text(value, "id"), _text(value, "name"), checks if isinstance(checks, tuple) else (),
                  require, value)


def contract_view(data: Any, stem: str = "", path: str = "") -> ContractView:
    """The view of one contract's data (a loaded document's ``data``)."""
    frozen = freeze(data) if isinstance(data, Mapping) else EMPTY
    metadata = frozen.get("metadata") if isinstance(frozen.get("metadata"), Mapping) else EMPTY
    version = _text(metadata, "version") or _text(frozen, "version")
    return ContractView(
        stem=stem,
        path=path,
        name=_text(frozen, "name"),
        version=version,
        depends_on=_strings(metadata.get("depends_on")),
        metadata=metadata,
        equations=_keyed("equations", frozen.get("equations"), Equation),  # type: ignore[arg-type]
        obligations=_keyed("proof_obligations", frozen.get("proof_obligations"), Obligation),  # type: ignore[arg-type]
        falsifiers=_keyed("falsification_tests", frozen.get("falsification_tests"), Item),
        kani_harnesses=_keyed("kani_harnesses", frozen.get("kani_harnesses"), Item),
        qa_gate=_gate(frozen.get("qa_gate"), tuple(parse_requirements(data)[0])),
        top=MappingProxyType({k: v for k, v in frozen.items() if k not in VIEWED_SECTIONS}),
    )


def document_view(doc: Any) -> ContractView:
    """The view of a loaded document (``pv.contracts.loading.Document``)."""
    return contract_view(doc.data, doc.stem, str(doc.path))

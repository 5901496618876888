"""The contract schema (``contract.schema.json``, package data of ``pv.schemas``) and validation against it.

Both schema files are read once per process into one set of resources, keyed by
their ``$id``, so that ``contract.schema.json`` can ``$ref`` into
``check.schema.json``. :func:`is_valid` answers with the fast compiled check of
:mod:`pv.contracts.fastschema`; :func:`schema_errors` runs ``jsonschema`` (Draft 2020-12,
imported only then, its validator built once) for the documents that need it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pv._util.resources import schema_text
from pv.contracts.fastschema import SchemaCompiler, Undecided

CONTRACT_SCHEMA = "contract.schema.json"
CHECK_SCHEMA = "check.schema.json"

#: Document kinds and the subschema (JSON pointer into the contract schema) each is checked against.
CONTRACT = "contract"
BINDING_REGISTRY = "binding registry"
_POINTERS = {CONTRACT: "", BINDING_REGISTRY: "/$defs/binding_registry"}


def document_kind(data: Any) -> str:
    """A binding registry has ``bindings`` and no ``metadata``; anything else is read as a contract."""
    if isinstance(data, dict) and "bindings" in data and "metadata" not in data:
        return BINDING_REGISTRY
    return CONTRACT


@lru_cache(maxsize=1)
def resources() -> dict[str, dict[str, Any]]:
    """``$id`` -> schema, for both schema files."""
    loaded = {}
    for name in (CONTRACT_SCHEMA, CHECK_SCHEMA):
        schema = json.loads(schema_text(name))
        loaded[schema.get("$id", name)] = schema
    return loaded


@lru_cache(maxsize=1)
def _compiler() -> SchemaCompiler:
    return SchemaCompiler(resources())


def is_valid(data: Any, kind: str = CONTRACT) -> bool | None:
    """Whether ``data`` is valid for ``kind``; None when only the full validator can tell."""
    try:
        return _compiler().predicate(CONTRACT_SCHEMA, _POINTERS[kind])(data)
    except Undecided:
        return None


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT202012)) for uri, schema in resources().items()
    )
    schema: dict[str, Any] = {"$schema": resources()[CONTRACT_SCHEMA]["$schema"], "$ref": f"{CONTRACT_SCHEMA}#{_POINTERS[kind]}"}
    return Draft202012Validator(schema, registry=registry)


def schema_errors(data: Any, kind: str = CONTRACT) -> list[Any]:
    """Every ``jsonschema.ValidationError`` of ``data`` (empty when the fast check says valid)."""
    if is_valid(data, kind):
        return []
    return list(_validator(kind).iter_errors(data))

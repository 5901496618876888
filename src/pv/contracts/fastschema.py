"""A fast, exact yes/no JSON Schema check for the keywords our schemas use.

``pv validate`` must start in well under 150 ms and spend well under 1 ms per
contract; importing ``jsonschema`` alone costs about 110 ms and validating one
contract with it about 3 ms. So every document is first checked by a predicate
compiled once from the schema: when it says "valid", ``jsonschema`` would say
the same and is never imported; when it says "invalid" (or cannot decide),
``jsonschema`` runs and its errors become findings.

The compiled predicate is exact for the keywords it knows (Draft 2020-12
semantics, as ``jsonschema`` implements them, e.g. ``1.0`` is an integer and
``True`` is not a number); a schema with any other keyword compiles to a
predicate that raises :class:`Undecided`, as does an instance it cannot judge
exactly (e.g. an ``enum`` of non-strings). A test compares both validators on
the real corpus and on generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Any], bool]

#: Keywords that never affect validity.
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly",
})


class Undecided(Exception):
    """The fast check cannot decide; the full validator must."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


_TYPES: dict[str, Predicate] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _undecided(_: Any) -> bool:
    raise Undecided


class SchemaCompiler:
    """Compiles schemas (by URI, as in a ``referencing`` registry) into predicates, once each."""

    def __init__(self, resources: Mapping[str, Mapping[str, Any]]) -> None:
        self.resources = resources
        self._compiled: dict[tuple[str, str], Predicate] = {}

    def predicate(self, uri: str, pointer: str = "") -> Predicate:
        """The predicate of the subschema at ``uri#pointer`` (recursive references allowed)."""
        key = (uri, pointer)
        if key not in self._compiled:
            cell: list[Predicate] = []
            self._compiled[key] = lambda x: cell[0](x)  # forward reference while compiling
            target = self.resources[uri]
            for part in filter(None, pointer.split("/")):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            cell.append(self._compile(target, uri))
            self._compiled[key] = cell[0]
        return self._compiled[key]

    def _ref(self, ref: str, base: str) -> Predicate:
        uri, _, pointer = ref.partition("#")
        uri = uri or base
        if uri not in self.resources or (pointer and not pointer.startswith("/")):
            return _undecided
        return self.predicate(uri, pointer)

    def _compile(self, schema: Any, base: str) -> Predicate:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, dict) or not set(schema) <= _KNOWN:
            return _undecided
        checks: list[Predicate] = []
        for keyword, value in schema.items():
            if keyword not in _ANNOTATIONS and keyword not in _WITH_PROPERTIES:
                checks.append(_KEYWORDS[keyword](self, value, base))
        if {"properties", "additionalProperties"} & set(schema):
            checks.append(self._properties(schema.get("properties", {}), schema.get("additionalProperties"), base))
        if len(checks) == 1:
            return checks[0]

        def every(x: Any) -> bool:
            for check in checks:
                if not check(x):
                    return False
            return True

        return every

    def _properties(self, properties: Mapping[str, Any], additional: Any, base: str) -> Predicate:
        known = {name: self._compile(sub, base) for name, sub in properties.items()}
        rest = None if additional is None else self._compile(additional, base)

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for key, value in x.items():
                sub = known.get(key) if isinstance(key, str) else None
                if sub is None:
                    if rest is not None and not rest(value):
                        return False
                elif not sub(value):
                    return False
            return True

        return check

    def compile_list(self, schemas: Any, base: str) -> list[Predicate]:
        return [self._compile(s, base) for s in schemas]


def _type(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    names = [value] if isinstance(value, str) else list(value)
    if not all(name in _TYPES for name in names):
        return _undecided
    tests = [_TYPES[name] for name in names]
    if len(tests) == 1:
        return tests[0]
    return lambda x: any(test(x) for test in tests)


def _strings_only(values: list[Any]) -> Predicate:
    if not all(isinstance(v, str) for v in values):
        return _undecided
    allowed = frozenset(values)
    return lambda x: isinstance(x, str) and x in allowed


def _enum(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    return _strings_only(list(value))


def _const(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    return _strings_only([value])


def _required(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    names = tuple(value)
    return lambda x: not isinstance(x, dict) or all(name in x for name in names)


def _items(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    sub = compiler._compile(value, base)
    return lambda x: not isinstance(x, list) or all(sub(item) for item in x)


def _bounded(kind: Predicate, measure: Callable[[Any], Any], fails: Callable[[Any, Any], bool]) -> Callable[..., Predicate]:
    def make(compiler: SchemaCompiler, limit: Any, base: str) -> Predicate:
        return lambda x: not kind(x) or not fails(measure(x), limit)

    return make


def _identity(x: Any) -> Any:
    return x


def _pattern(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    regex = re.compile(value)
    return lambda x: not isinstance(x, str) or regex.search(x) is not None


def _unique(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    if not value:
        return lambda x: True

    def check(x: Any) -> bool:
        if not isinstance(x, list):
            return True
        if not all(isinstance(item, str) for item in x):
            raise Undecided
        return len(set(x)) == len(x)

    return check


def _property_names(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    sub = compiler._compile(value, base)
    return lambda x: not isinstance(x, dict) or all(sub(key) for key in x)


def _any_of(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    subs = compiler.compile_list(value, base)
    return lambda x: any(sub(x) for sub in subs)


def _all_of(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    subs = compiler.compile_list(value, base)
    return lambda x: all(sub(x) for sub in subs)


def _one_of(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    subs = compiler.compile_list(value, base)
    return lambda x: sum(1 for sub in subs if sub(x)) == 1


def _not(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    sub = compiler._compile(value, base)
    return lambda x: not sub(x)


def _ref(compiler: SchemaCompiler, value: Any, base: str) -> Predicate:
    return compiler._ref(value, base)


_is_str = _TYPES["string"]
_is_list = _TYPES["array"]
_is_dict = _TYPES["object"]

_KEYWORDS: dict[str, Callable[[SchemaCompiler, Any, str], Predicate]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "required": _required,
    "items": _items,
    "pattern": _pattern,
    "uniqueItems": _unique,
    "propertyNames": _property_names,
    "anyOf": _any_of,
    "allOf": _all_of,
    "oneOf": _one_of,
    "not": _not,
    "$ref": _ref,
    "minLength": _bounded(_is_str, len, lambda n, limit: n < limit),
    "maxLength": _bounded(_is_str, len, lambda n, limit: n > limit),
    "minItems": _bounded(_is_list, len, lambda n, limit: n < limit),
    "maxItems": _bounded(_is_list, len, lambda n, limit: n > limit),
    "minProperties": _bounded(_is_dict, len, lambda n, limit: n < limit),
    "maxProperties": _bounded(_is_dict, len, lambda n, limit: n > limit),
    "minimum": _bounded(_is_number, _identity, lambda v, limit: v < limit),
    "maximum": _bounded(_is_number, _identity, lambda v, limit: v > limit),
    "exclusiveMinimum": _bounded(_is_number, _identity, lambda v, limit: v <= limit),
    "exclusiveMaximum": _bounded(_is_number, _identity, lambda v, limit: v >= limit),
}
_WITH_PROPERTIES = frozenset({"properties", "additionalProperties"})
_KNOWN = frozenset(_KEYWORDS) | _ANNOTATIONS | _WITH_PROPERTIES

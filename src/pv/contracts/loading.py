"""Load a contract file into plain data, keeping the line and column of every node.

Safe by construction: the YAML is composed into nodes (libyaml when available)
and turned into plain ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``
by this module; no tag ever constructs an object. Plain scalars are resolved
with the YAML 1.2 core schema (as the reference tool reads them): ``1e-5`` is a
float, ``2026-05-22`` and ``yes`` are strings.

Refused before or while parsing, each with one :class:`LoadError` whose
``finding`` names the file and line: unreadable files, files over
``MAX_BYTES`` (checked before reading), binary files (NUL bytes), non-UTF-8
text, empty files, YAML syntax errors, unsupported tags, nesting deeper than
``MAX_DEPTH``, alias expansion beyond ``MAX_ALIAS_NODES`` nodes ("billion
laughs"), integers too long to convert quickly (never read as strings in
their place), and a top level that is not a mapping. Duplicate mapping keys are not
fatal: they are recorded on the document (the last value wins) and reported by
the rule PV-YAML-002.

Locations are found lazily: a document keeps its text and composes the node
tree again only when a finding needs a line, so clean files cost nothing extra.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pv._util.errors import UserError
from pv._util.files import InputError, read_input
from pv.contracts.findings import Finding, Location, Severity

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_NODES = 10_000
#: Most characters of scalars reached through aliases (each use counted).
MAX_ALIAS_BYTES = 2 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")

#: Rule ids of the loader's findings. PV-LOAD: the bytes cannot be read as text
#: (unreadable input, exit 2); PV-YAML: the text is not a usable YAML mapping (exit 1).
UNREADABLE = "PV-LOAD-001"
TOO_LARGE = "PV-LOAD-002"
BINARY = "PV-LOAD-003"
NOT_UTF8 = "PV-LOAD-004"
SYNTAX = "PV-YAML-001"
DUPLICATE_KEY = "PV-YAML-002"
TOO_DEEP = "PV-YAML-003"
BAD_TAG = "PV-YAML-004"
NOT_MAPPING = "PV-YAML-005"
ALIAS_BOMB = "PV-YAML-006"
EMPTY = "PV-YAML-007"
LONG_INTEGER = "PV-YAML-008"

#: id -> summary of every loader rule (for SARIF rule tables and docs).
LOADER_RULES = {
    UNREADABLE: "file cannot be read",
    TOO_LARGE: f"file larger than {MAX_BYTES} bytes",
    BINARY: "binary file (NUL bytes)",
    NOT_UTF8: "file is not UTF-8 text",
    SYNTAX: "YAML syntax error",
    DUPLICATE_KEY: "mapping key repeated (the last value wins)",
    TOO_DEEP: f"nesting deeper than {MAX_DEPTH} levels",
    BAD_TAG: "YAML tag other than the plain data types",
    NOT_MAPPING: "top level is not a mapping",
    ALIAS_BOMB: f"aliases expand to more than {MAX_ALIAS_NODES} nodes or {MAX_ALIAS_BYTES} characters",
    EMPTY: "empty file",
    LONG_INTEGER: "integer longer than pv reads (quote it if it is text)",
}

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _CORE + "seq", _CORE + "map"
_PLAIN = "?plain"  # a plain scalar without a tag: resolved by _resolve_plain

_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {
    ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
    "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
    "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
    ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan"),
}
#: Longer decimal integers are refused (Python refuses to convert them quickly).
_MAX_INT_DIGITS = 4000
#: Integers of other bases are refused beyond the size of the longest decimal one.
_MAX_INT_BITS = int(_MAX_INT_DIGITS * 3.32)
_BITS_PER_DIGIT = {8: 3, 16: 4}
_BASED_INTS = (("0o", 8, re.compile(r"[0-7]+\Z")), ("0x", 16, re.compile(r"[0-9a-fA-F]+\Z")))
#: First characters of plain scalars that may be something other than a string.
_MAYBE_TYPED = frozenset("0123456789+-.~nNtTfF")
#: Scalars longer than this are remembered, so that a second use (an alias) is counted;
#: shorter ones cost at most this many characters per alias of the file.
_TRACKED_SCALAR = 16
_FLOW_OPEN_RE = re.compile(r"[\[\]{}]")
_COMPACT_NESTING_RE = re.compile(r"(?:[-?][ \t]+){%d,}" % MAX_DEPTH)


class LoadError(UserError):
    """A file that cannot be read as a contract; ``finding`` says where and why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.format_text(), exit_code=2 if finding.rule.startswith("PV-LOAD") else 1)
        self.finding = finding


class _Resolver(_Loader):  # type: ignore[misc, valid-type]
    """Composes nodes only; leaves plain scalars to :func:`_resolve_plain` (YAML 1.2 core)."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """Path-dependent resolvers are not used."""

    def ascend_resolver(self) -> None:
        """Path-dependent resolvers are not used."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


def _resolve_plain(value: str) -> Any:
    """The value of a plain scalar under the YAML 1.2 core schema."""
    if not value or value[0] not in _MAYBE_TYPED:
        return value
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    if _INT_RE.match(value):
        if len(value) > _MAX_INT_DIGITS:
            raise _LongInteger(f"integer of {len(value)} digits: pv reads at most {_MAX_INT_DIGITS}")
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    if value in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[value]
    for prefix, base, pattern in _BASED_INTS:
        if value.startswith(prefix) and pattern.match(value, len(prefix)):
            digits = value[len(prefix):]
            if len(digits) * _BITS_PER_DIGIT[base] > _MAX_INT_BITS:
                raise _LongInteger(f"integer of {len(digits)} base-{base} digits: pv reads at most"
                                   f" {_MAX_INT_BITS // _BITS_PER_DIGIT[base]}")
            return int(digits, base)
    return value


_EXPLICIT: dict[str, Any] = {
    _STR: str,
    _NULL: lambda v: None if v in _NULLS else _bad_tag_value(v),
    _BOOL: lambda v: _BOOLS[v] if v in _BOOLS else _bad_tag_value(v),
    _INT: lambda v: v if isinstance(v := _resolve_plain(v), int) and not isinstance(v, bool) else _bad_tag_value(v),
    _FLOAT: lambda v: _as_float(v) if isinstance(v := _resolve_plain(v), (int, float)) and not isinstance(v, bool)
    else _bad_tag_value(v),
}


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        raise _TagValueError(f"integer of {value.bit_length()} bits is too large for a float") from None


class _TagValueError(ValueError):
    """A scalar whose tag we do not read, or whose value does not match its tag; ``node`` is where."""

    def __init__(self, message: str, node: Any = None) -> None:
        super().__init__(message)
        self.node = node


class _LongInteger(_TagValueError):
    """A plain integer too long to read: refused, never read as a string in its place."""


def _bad_tag_value(value: Any) -> Any:
    raise _TagValueError(f"value {value!r} does not match its tag")


def _position(node: Any) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


@dataclass
class Document:
    """One loaded contract: plain ``data`` plus what is needed to point into the file."""

    path: str
    data: Any
    sha256: str
    text: str
    #: (location of the second key, key) for each repeated mapping key
    duplicate_keys: list[tuple[Location, str]] = field(default_factory=list)
    #: results derived from the data, computed once by whoever needs them (e.g. schema errors)
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _root: Any = field(default=None, repr=False, compare=False)
    #: key -> (key node, value node) of each mapping node met by a locate, by id (last duplicate wins)
    _index: dict[int, dict[Any, tuple[Any, Any]]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def stem(self) -> str:
        """The file name without its suffix: the contract's name in ``depends_on``."""
        return os.path.splitext(os.path.basename(self.path))[0]

    def release_nodes(self) -> None:
        """Drop the node tree (memory); a later locate parses the text again."""
        self._root = None
        self._index = {}

    def locate(self, *keys: str | int) -> Location:
        """Where the value at ``keys`` starts (the nearest present ancestor if missing)."""
        return self._find(keys, want_key=False)

    def locate_key(self, *keys: str | int) -> Location:
        """Where the mapping key of the last of ``keys`` is written (else as :meth:`locate`)."""
        return self._find(keys, want_key=True)

    def _find(self, keys: tuple[str | int, ...], want_key: bool) -> Location:
        if self._root is None:
            self._root = _compose(self.text)
            self._index = {}
        node, key_node = self._root, None
        for key in keys:
            child = self._child(node, key)
            if child is None:
                return Location(self.path, *_position(node))
            key_node, node = child
        if want_key and key_node is not None:
            return Location(self.path, *_position(key_node))
        return Location(self.path, *_position(node))


    def _child(self, node: Any, key: str | int) -> tuple[Any, Any] | None:
        """(key node or None, value node) of ``key`` in a composed node; the last duplicate wins.
        Each mapping is indexed once, so locating every finding of a file is linear."""
        if isinstance(node, yaml.MappingNode):
            index = self._index.get(id(node))
            if index is None:
                index = self._index[id(node)] = {}
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode):
                        try:
                            index[_scalar(key_node)] = (key_node, value_node)
                        except (_TagValueError, TypeError):
                            continue
            return index.get(key)
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            return None, node.value[key]
        return None


def _scalar(node: Any) -> Any:
    """The plain value of a scalar node; raises :class:`_TagValueError` for a tag we do not read."""
    tag, value = node.tag, node.value
    if tag is _PLAIN:
        if not value or value[0] not in _MAYBE_TYPED:
            return value
        try:
            return _resolve_plain(value)
        except _LongInteger as err:
            raise _LongInteger(str(err), node) from None
    if tag is _STR:
        return value
    convert = _EXPLICIT.get(tag)
    if convert is None:
        raise _TagValueError(f"unsupported tag {tag!r} (only plain YAML data is read)", node)
    try:
        return convert(value)
    except _TagValueError as err:
        raise type(err)(str(err), node) from None


def _compose(text: str) -> Any:
    loader = _Resolver(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _Builder:
    """Turns a node tree into plain data, counting alias expansion and depth."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.duplicates: list[tuple[Location, str]] = []
        self.seen: set[int] = set()
        self.alias_nodes = 0
        self.alias_bytes = 0

    def scalar(self, node: Any, via_alias: bool) -> Any:
        """The value of a scalar node, counting its characters if it is reached through an alias."""
        if via_alias or id(node) in self.seen:
            self.alias_bytes += len(node.value)
            if self.alias_bytes > MAX_ALIAS_BYTES:
                raise _fatal(ALIAS_BOMB, f"aliases expand to more than {MAX_ALIAS_BYTES} characters (alias bomb?)",
                             Location(self.path, *_position(node)))
        elif len(node.value) > _TRACKED_SCALAR:
            self.seen.add(id(node))
        return _scalar(node)

    def build(self, node: Any, depth: int = 0, via_alias: bool = False) -> Any:
        """The plain value of ``node``; a node met a second time was reached through an alias."""
        kind = node.__class__
        if kind is yaml.ScalarNode:
            return self.scalar(node, via_alias)
        if depth >= MAX_DEPTH:
            raise _fatal(TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels", Location(self.path, *_position(node)))
        if not via_alias:
            via_alias = id(node) in self.seen
            self.seen.add(id(node))
        if via_alias:
            self.alias_nodes += 1 + len(node.value)
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise _fatal(ALIAS_BOMB, f"aliases expand to more than {MAX_ALIAS_NODES} nodes (alias bomb?)",
                             Location(self.path, *_position(node)))
        depth += 1
        build, scalar = self.build, self.scalar
        if kind is yaml.SequenceNode and node.tag == _SEQ:
            return [scalar(item, via_alias) if item.__class__ is yaml.ScalarNode else build(item, depth, via_alias)
                    for item in node.value]
        if kind is not yaml.MappingNode or node.tag != _MAP:
            raise _fatal(BAD_TAG, f"unsupported tag {node.tag!r}", Location(self.path, *_position(node)))
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.__class__ is not yaml.ScalarNode:
                raise _fatal(SYNTAX, "a mapping key must be a plain value, not a list or mapping",
                             Location(self.path, *_position(key_node)))
            key = scalar(key_node, via_alias)
            if key in mapping:
                self.duplicates.append((Location(self.path, *_position(key_node)), str(key)))
            mapping[key] = (scalar(value_node, via_alias) if value_node.__class__ is yaml.ScalarNode
                            else build(value_node, depth, via_alias))
        return mapping


def _fatal(rule: str, message: str, location: Location) -> LoadError:
    return LoadError(Finding(rule, Severity.ERROR, message, location))


def _line_of(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _decode(path: str, raw: bytes) -> str:
    if b"\0" in raw:
        raise _fatal(BINARY, "binary file (NUL bytes), not YAML text", Location(path, 1, 1))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise _fatal(NOT_UTF8, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})",
                     Location(path, line, col)) from None
    return text[1:] if text.startswith("\ufeff") else text


def _has_long_line(text: str) -> bool:
    """Whether some line is long enough to hold ``MAX_DEPTH`` compact ``- `` indicators."""
    return len(text) > 2 * MAX_DEPTH and max(map(len, text.split("\n"))) > 2 * MAX_DEPTH


def _check_nesting(path: str, text: str) -> None:
    """Refuse, before parsing, nesting that would exhaust the parser's stack."""
    if text.count("[") + text.count("{") > MAX_DEPTH:
        depth = 0
        for match in _FLOW_OPEN_RE.finditer(text):
            depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
            if depth > MAX_DEPTH:
                raise _fatal(TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels",
                             Location(path, *_line_of(text, match.start())))
    compact = _COMPACT_NESTING_RE.search(text) if _has_long_line(text) else None
    if compact:
        raise _fatal(TOO_DEEP, f"nesting deeper than {MAX_DEPTH} levels", Location(path, *_line_of(text, compact.start())))


def _syntax_error(path: str, text: str, err: yaml.YAMLError) -> LoadError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        where = Location(path, mark.line + 1, mark.column + 1)
    else:
        where = Location(path, *_line_of(text, min(getattr(err, "position", 0) or 0, len(text))))
    problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line + 1 != where.line:
        context += f" started at line {context_mark.line + 1}"
    return _fatal(SYNTAX, f"YAML syntax error: {problem}" + (f" ({context})" if context else ""), where)


def read_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, sha256 of the bytes) of a YAML file, refusing big, binary and non-UTF-8 files."""
    shown = str(path)
    try:
        raw = read_input(path, MAX_BYTES)
    except InputError as err:
        raise _fatal(TOO_LARGE if err.too_large else UNREADABLE,
                     err.reason if err.too_large else f"cannot read: {err.reason.removeprefix('cannot read: ')}",
                     Location(shown)) from None
    return _decode(shown, raw), hashlib.sha256(raw).hexdigest()


def parse_text(path: str, text: str) -> tuple[Any, list[tuple[Location, str]]]:
    """(plain data, duplicate keys) of YAML ``text``; the top level must be a mapping."""
    _, data, duplicates = _parse(path, text)
    return data, duplicates


def _parse(path: str, text: str) -> tuple[Any, dict[str, Any], list[tuple[Location, str]]]:
    """(node tree, plain data, duplicate keys) of YAML ``text``."""
    if not text or text.isspace():
        raise _fatal(EMPTY, "empty file: a contract is a YAML mapping", Location(path))
    _check_nesting(path, text)
    try:
        root = _compose(text)
    except yaml.YAMLError as err:
        raise _syntax_error(path, text, err) from None
    if root is None:
        raise _fatal(EMPTY, "no YAML document (only comments or blank lines)", Location(path))
    builder = _Builder(path)
    try:
        data = builder.build(root)
    except _TagValueError as err:
        rule = LONG_INTEGER if isinstance(err, _LongInteger) else BAD_TAG
        raise _fatal(rule, f"{err}; quote it if it is text" if rule == LONG_INTEGER else str(err),
                     Location(path, *_position(err.node))) from None
    if not isinstance(data, dict):
        kind = "empty value" if data is None else ("list" if isinstance(data, list) else type(data).__name__)
        raise _fatal(NOT_MAPPING, f"the top level must be a mapping of sections, found a {kind}",
                     Location(path, *_position(root)))
    return root, data, builder.duplicates


def load_document(path: str | os.PathLike[str], keep_nodes: bool = False) -> Document:
    """Read and parse one contract file; raises :class:`LoadError` for a file that is not one.

    ``keep_nodes`` keeps the parsed node tree for :meth:`Document.locate` until
    :meth:`Document.release_nodes` (else it is parsed again on the first locate).
    """
    shown = str(path)
    text, digest = read_text(path)
    root, data, duplicates = _parse(shown, text)
    return Document(path=shown, data=data, sha256=digest, text=text, duplicate_keys=duplicates,
                    _root=root if keep_nodes else None)


def collect_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The YAML files named or found (recursively, hidden folders skipped) under ``paths``, sorted.

    A path that does not exist is a :class:`UserError`; a file named explicitly is
    taken whatever its suffix.
    """
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = [name for name in subfolders if not name.startswith(".")]
                found.update(Path(folder, name) for name in files
                             if name.endswith(YAML_SUFFIXES) and not name.startswith("."))
        elif path.exists():
            found.add(path)
        else:
            raise UserError(f"{path}: no such file or directory")
    return sorted(found)

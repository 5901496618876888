"""Property tests: no input makes the validator raise, and the fast schema check agrees with jsonschema.

Inputs: random text, random YAML made of the dialect's own keys, and real
upstream contracts mutated line by line and byte by byte.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pv.contracts import schema as contract_schema
from pv.contracts.validate import INTERNAL, validate_paths

from shared_data import shared_dir

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def upstream_texts() -> list[bytes]:
    return [p.read_bytes() for p in sorted((shared_dir() / "upstream-contracts").rglob("*.yaml"))]


def _validate_bytes(content: bytes) -> None:
    """Validate one file holding ``content``: only findings, never an exception."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "c-v1.yaml")
        path.write_bytes(content)
        result = validate_paths([path])
        findings = result.all_findings()
    assert not [f for f in findings if f.rule == INTERNAL], findings
    assert result.exit_code() in (0, 1, 2)
    for finding in findings:
        assert finding.location.line >= 1 and finding.location.col >= 1


KEYS = sorted({
    "metadata", "version", "description", "depends_on", "equations", "formula", "proof_obligations", "id", "type",
    "property", "formal", "tolerance", "applies_to", "falsification_tests", "rule", "prediction", "if_fails",
    "kani_harnesses", "obligation", "bound", "strategy", "qa_gate", "name", "require", "falsifier", "profiles",
    "check", "given", "expect", "implementation", "lean", "bindings", "contract", "equation", "status", "qa_gates",
})
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.sampled_from(KEYS),
                    st.text(max_size=8), st.sampled_from(["FT-A-001", "KANI-A-001", "F-A-001", "A-INV-001", "all", "gpu"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)
documents = st.dictionaries(st.sampled_from(KEYS), trees, min_size=1, max_size=6)


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_never_raise(content: bytes) -> None:
    _validate_bytes(content)


@SETTINGS
@given(documents)
def test_random_dialect_documents_never_raise(data: dict) -> None:
    _validate_bytes(yaml.safe_dump(data, allow_unicode=True).encode())


def _mutate(text: bytes, data: st.DataObject) -> bytes:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "byte", "truncate", "insert"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "indent":
            lines[i] = b"  " + lines[i]
        elif action == "dedent":
            lines[i] = lines[i].lstrip(b" ")
        elif action == "byte" and lines[i]:
            k = data.draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:k] + bytes([data.draw(st.integers(0, 255))]) + lines[i][k + 1:]
        elif action == "truncate":
            lines = lines[:i]
        elif action == "insert":
            lines.insert(i, data.draw(st.sampled_from([b"- x\n", b"qa_gates: {}\n", b"  id: FT-A-001\n", b"&a [*a]\n",
                                                        b"  tolerance: -1\n", b"bound: 0\n", b": :\n", b"\t\n"])))
    return b"".join(lines)


@SETTINGS
@given(st.data())
def test_mutated_upstream_contracts_never_raise(data: st.DataObject) -> None:
    texts = upstream_texts()
    if not texts:
        pytest.fail("upstream contracts not found (set PV_SHARED_DIR)")
    _validate_bytes(_mutate(data.draw(st.sampled_from(texts)), data))


def _jsonschema_valid(data: object, kind: str) -> bool:
    return not list(contract_schema._validator(kind).iter_errors(data))


@SETTINGS
@given(documents)
def test_fast_check_agrees_with_jsonschema_on_random_documents(data: dict) -> None:
    kind = contract_schema.document_kind(data)
    fast = contract_schema.is_valid(data, kind)
    if fast is not None:
        assert fast == _jsonschema_valid(data, kind)


@SETTINGS
@given(st.data())
def test_fast_check_agrees_with_jsonschema_on_mutated_contracts(data: st.DataObject) -> None:
    from pv.contracts.loading import LoadError, parse_text

    texts = upstream_texts() + [p.read_bytes() for p in sorted(Path(__file__).resolve().parents[1].glob("contracts/*.yaml"))]
    text = _mutate(data.draw(st.sampled_from(texts)), data)
    try:
        parsed, _ = parse_text("c.yaml", text.decode("utf-8"))
    except (LoadError, UnicodeDecodeError):
        return
    kind = contract_schema.document_kind(parsed)
    fast = contract_schema.is_valid(parsed, kind)
    if fast is not None:
        assert fast == _jsonschema_valid(parsed, kind)


EDGE_VALUES = [None, True, False, 0, 1, -1, 0.0, 2.5, -0.5, float("nan"), float("inf"), "", "  ", "x", "FT-X-001",
               [], [1], {}, {"k": 1}]


def _paths(tree: object, prefix: tuple = (), first_items: bool = False) -> list[tuple]:
    """Every key path in a tree of plain data, containers included (``first_items``: of lists, the first only)."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key), first_items)
    elif isinstance(tree, list):
        for index, value in enumerate(tree[:1] if first_items else tree):
            found += _paths(value, (*prefix, index), first_items)
    return found


def _edited(tree: object, path: tuple, value: object, delete: bool = False) -> object:
    """A copy of ``tree`` with the node at ``path`` replaced by ``value`` (or deleted)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        copy = dict(tree)
    else:
        copy = list(tree)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _edited(tree[head], rest, value, delete)
    return copy


def _edits(tree: object, values: list = EDGE_VALUES, first_items: bool = False) -> list[object]:
    """Every single edit of ``tree``: each node replaced by each of ``values``, and each node deleted."""
    paths = _paths(tree, first_items=first_items)
    return [_edited(tree, p, v) for p in paths for v in values] + [_edited(tree, p, None, delete=True) for p in paths]


def _base_data() -> dict:
    from test_rules_each import BASE

    return yaml.safe_load(BASE)


def test_every_single_edit_of_a_contract_gives_findings_not_exceptions() -> None:
    from pv.contracts.loading import Document, parse_text
    from pv.contracts.validate import validate_documents

    for data in _edits(_base_data()):
        text = yaml.safe_dump(data, allow_unicode=True)
        try:
            parsed, duplicates = parse_text("c-v1.yaml", text)
        except Exception as err:  # only the loader's own refusals are allowed
            assert type(err).__name__ == "LoadError", text
            continue
        doc = Document(path="c-v1.yaml", data=parsed, sha256="", text=text, duplicate_keys=duplicates)
        findings = validate_documents([doc])
        assert not [f for f in findings if f.rule == INTERNAL], (text, findings)


def test_fast_check_agrees_with_jsonschema_on_every_single_edit() -> None:
    from pv.contracts.loading import parse_text

    softmax = shared_dir() / "upstream-contracts" / "provable-contracts" / "softmax-kernel-v1.yaml"
    rich = parse_text("s.yaml", softmax.read_text(encoding="utf-8"))[0]  # lean, kernel_structure, simd, enforcement...
    one_of_each_type = [None, True, 0, 2.5, "x", [], {}]
    for data in _edits(_base_data()) + _edits(rich, one_of_each_type, first_items=True):
        kind = contract_schema.document_kind(data)
        fast = contract_schema.is_valid(data, kind)
        if fast is not None:
            assert fast == _jsonschema_valid(data, kind), data


def test_fast_check_decides_every_real_contract() -> None:
    texts = upstream_texts() + [p.read_bytes() for p in sorted(Path(__file__).resolve().parents[1].glob("contracts/*.yaml"))]
    from pv.contracts.loading import parse_text

    for text in texts:
        parsed, _ = parse_text("c.yaml", text.decode("utf-8"))
        kind = contract_schema.document_kind(parsed)
        assert contract_schema.is_valid(parsed, kind) == _jsonschema_valid(parsed, kind)

"""The loader: plain data with YAML 1.2 scalars, lines for every node, and one clear error per bad file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pv.contracts import loading
from pv._util.errors import UserError
from pv.contracts.loading import LoadError, collect_paths, load_document


def load_error(tmp_path: Path, content: bytes | str, name: str = "c.yaml") -> tuple[str, int, str, int]:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(LoadError) as caught:
        load_document(path)
    finding = caught.value.finding
    assert finding.location.path == str(path)
    return finding.rule, finding.location.line, finding.message, caught.value.exit_code


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8)
)

BAD = [
    ("empty", "", "PV-YAML-007", 1, "empty", 1),
    ("comments only", "# nothing\n\n", "PV-YAML-007", 1, "no YAML document", 1),
    ("binary", b"metadata:\x00\x01\n", "PV-LOAD-003", 1, "binary", 2),
    ("latin-1", "metadata:\n  author: Jos\xe9\n".encode("latin-1"), "PV-LOAD-004", 2, "not UTF-8", 2),
    ("syntax", "metadata:\n  version: [1,\n  author: x\n", "PV-YAML-001", 4, "sequence started at line 2", 1),
    ("tab indent", "metadata:\n\tversion: 1\n", "PV-YAML-001", 2, "YAML syntax error", 1),
    ("list at top", "- metadata\n", "PV-YAML-005", 1, "found a list", 1),
    ("scalar at top", "just text\n", "PV-YAML-005", 1, "found a str", 1),
    ("python tag", "metadata: !!python/object/apply:os.system [echo]\n", "PV-YAML-004", 1, "unsupported tag", 1),
    ("local tag", "metadata:\n  version: !custom 1\n", "PV-YAML-004", 2, "unsupported tag", 1),
    ("int tag on text", "metadata:\n  version: !!int one\n", "PV-YAML-004", 2, "does not match its tag", 1),
    ("alias bomb", BILLION_LAUGHS, "PV-YAML-006", 2, "alias", 1),
    ("recursive alias", "a: &a [1, *a]\n", "PV-YAML-003", 1, "nesting deeper", 1),
    ("flow nesting", "a: " + "[" * 100_000 + "\n", "PV-YAML-003", 1, "nesting deeper", 1),
    ("block nesting", "a:\n" + "- " * 5_000 + "x\n", "PV-YAML-003", 2, "nesting deeper", 1),
    ("mapping as key", "a:\n  ? [1, 2]\n  : b\n", "PV-YAML-001", 2, "mapping key", 1),
    ("two documents", "a: 1\n---\nb: 2\n", "PV-YAML-001", 2, "single document", 1),
    ("long hex integer", "metadata:\n  version: 0x" + "f" * 4000 + "\n", "PV-YAML-008", 2, "4000 base-16 digits", 1),
    ("long octal integer", "a:\n  b: 0o" + "7" * 5000 + "\n", "PV-YAML-008", 2, "5000 base-8 digits", 1),
    ("long decimal integer", "a: -" + "9" * 4000 + "\n", "PV-YAML-008", 1, "4001 digits", 1),
    ("long tagged integer", "a: !!int 0x" + "f" * 4000 + "\n", "PV-YAML-008", 1, "quote it", 1),
]


@pytest.mark.parametrize(("content", "rule", "line", "words", "exit_code"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_file_gives_one_clear_error(tmp_path: Path, content, rule: str, line: int, words: str, exit_code: int) -> None:
    got_rule, got_line, message, got_exit = load_error(tmp_path, content)
    assert (got_rule, got_line, got_exit) == (rule, line, exit_code), message
    assert words in message


def test_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" * 20)
    opened = []
    monkeypatch.setattr(loading, "MAX_BYTES", 50)
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or open(*a, **k))
    with pytest.raises(LoadError) as caught:
        load_document(path)
    assert caught.value.finding.rule == "PV-LOAD-002" and "100 bytes" in caught.value.finding.message
    assert opened == []


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    with pytest.raises(LoadError) as caught:
        load_document(folder)
    assert (caught.value.finding.rule, caught.value.exit_code) == ("PV-LOAD-001", 2)
    assert "cannot read" in caught.value.finding.message


def test_load_error_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("- 1\n")
    with pytest.raises(UserError):
        load_document(tmp_path / "c.yaml")


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "a: 1e-5\nb: 2026-05-22\nc: yes\nd: 0x1F\ne: 0o17\nf: .inf\ng: ~\nh: 1.0.0\ni: True\nj: '1'\n"
        "k: !!str 3\nl: !!float 3\nm: -0\nn: +12\no: 1_000\np: " + "9" * 4000 + "\nq: '" + "9" * 5000 + "'\n"
    )
    data = load_document(path).data
    assert data == {
        "a": 1e-5, "b": "2026-05-22", "c": "yes", "d": 31, "e": 15, "f": float("inf"), "g": None,
        "h": "1.0.0", "i": True, "j": "1", "k": "3", "l": 3.0, "m": 0, "n": 12, "o": "1_000", "p": int("9" * 4000),
        "q": "9" * 5000,
    }
    assert type(data["l"]) is float and type(data["d"]) is int


def test_duplicate_keys_are_recorded_and_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb:\n  c: 2\n  c: 3\na: 4\n")
    doc = load_document(path)
    assert doc.data == {"a": 4, "b": {"c": 3}}
    assert [(loc.line, loc.col, key) for loc, key in doc.duplicate_keys] == [(4, 3, "c"), (5, 1, "a")]


def test_aliases_within_budget_are_expanded(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: &x {k: [1, 2]}\nb: *x\n")
    assert load_document(path).data == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}


def test_locate_values_keys_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("\ufeffmetadata:\n  version: 1.0.0\nitems:\n- id: A\n  note: x\n-   id: B\n")
    doc = load_document(path)
    assert (doc.locate("metadata", "version").line, doc.locate("metadata", "version").col) == (2, 12)
    assert (doc.locate_key("metadata", "version").line, doc.locate_key("metadata", "version").col) == (2, 3)
    assert (doc.locate("items", 1, "id").line, doc.locate("items", 1, "id").col) == (6, 9)
    assert (doc.locate("items", 1).line, doc.locate("items", 1).col) == (6, 5)
    missing = doc.locate("items", 0, "absent")
    assert (missing.line, missing.col) == (4, 3)  # the nearest present ancestor
    assert doc.locate("items", 7).line == 4  # out of range: the list itself
    assert doc.stem == "c" and len(doc.sha256) == 64


def test_locate_after_duplicate_key_points_at_the_value_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\na: 2\n")
    assert load_document(path).locate("a").line == 2


def test_collect_paths(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "sub/c.yaml", ".hidden/d.yaml", "sub/.e.yaml", "notes.txt", "sub/deeper/f.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a: 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in collect_paths([tmp_path, tmp_path / "notes.txt"])]
    assert found == ["a.yml", "b.yaml", "notes.txt", "sub/c.yaml", "sub/deeper/f.yaml"]
    with pytest.raises(UserError, match="no such file"):
        collect_paths([tmp_path / "absent"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    with pytest.raises(LoadError) as caught:
        load_document(path)
    assert caught.value.finding.rule == "PV-LOAD-001"

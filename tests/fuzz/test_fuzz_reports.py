"""`pv gate` on hostile reports: NaN, infinities, huge numbers, deep nesting, huge files,
FIFOs and generated JSON, bare or as the payload of a DSSE envelope, end in a clear error
(exit 2), in bounded time and memory."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from fuzz_bounded import assert_clear_cli, drawn, record, run_batch
from hypothesis import strategies as st

SKELETON = ('{"schema_version": @V@, "tool": {"name": "pv", "version": "0.1.0"}, "profile": {"name": "cpu"},'
            ' "results": [{"id": "FT-X-001", "status": "passed", "seconds": @V@}], "integrity": {"digest": "00"}}')
VALUES = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "-" + "9" * 400, "1" + "0" * 31,
          "[" * 50_000 + "]" * 50_000, "{\"a\":" * 5_000 + "1" + "}" * 5_000, '"\\ud800"', "null", "true", '"x"']


def _json_values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                        max_leaves=30)


def test_gate_refuses_hostile_reports_clearly(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "contracts").mkdir(parents=True)
    names = []

    def add(name: str, text: str | bytes) -> None:
        path = work / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        names.append(name)

    for index, value in enumerate(VALUES):
        add(f"root-{index}.json", SKELETON.replace("@V@", value))
        add(f"bare-{index}.json", value)
        for name, payload in (("statement", SKELETON.replace("@V@", value)), ("value", value)):
            envelope = {"payload": base64.b64encode(payload.encode()).decode(), "signatures": [],
                        "payloadType": "application/vnd.in-toto+json"}
            add(f"envelope-{name}-{index}.json", json.dumps(envelope) + "\n")
    for index, value in enumerate(drawn(_json_values(), 40)):
        add(f"gen-{index}.json", json.dumps(value, allow_nan=True))
    statement = base64.b64encode(b'{"_type": "https://in-toto.io/Statement/v1"}').decode()
    for index, envelope in enumerate([
        {"payload": "!!not base64!!", "payloadType": "application/vnd.in-toto+json", "signatures": []},
        {"payload": statement, "payloadType": "application/vnd.in-toto+json", "signatures": "none"},
        {"payload": statement, "payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid": 7}]},
        {"payload": statement, "payloadType": "application/vnd.in-toto+json",
         "signatures": [{"keyid": "k", "sig": "!!"}, {"keyid": "k", "sig": "AA=="}]},
        {"payload": statement, "payloadType": "text/plain", "signatures": []},
        {"payload": statement, "payloadType": "application/vnd.in-toto+json", "signatures": [], "extra": 1},
    ]):
        add(f"envelope-shape-{index}.json", json.dumps(envelope) + "\n")
    add("many-envelopes.json", (json.dumps({"payload": statement, "payloadType": "x", "signatures": []}) + "\n") * 40)
    add("empty.json", b"")
    add("not-utf8.json", b"\xff\xfe{}")
    big = work / "sparse-huge.json"
    with open(big, "wb") as handle:
        handle.truncate(65 * 2**20 + 1)  # over the size cap, without the disk
    names.append(big.name)
    os.mkfifo(work / "fifo.json")
    names.append("fifo.json")
    cases = [{"kind": "cli", "argv": ["gate", name, "--contracts", "contracts"], "rc": (2,)} for name in names]
    cases.append({"kind": "cli", "argv": ["gate", "/dev/zero", "--contracts", "contracts"], "rc": (2,)})
    batch = run_batch(cases, tmp_path)
    assert_clear_cli(cases, batch)
    record("gate reports", batch, len(cases))

"""Readers of GGUF files: generated header corruptions and one file per root cause end in a
GGUFFormatError naming the file (or a model), never an allocation from a header value, a
traceback or a hang."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import numpy as np
from fuzz_bounded import drawn, record, run_batch
from hypothesis import strategies as st

#: How a read may end: a model, or the package's clear errors.
ENDINGS = {"value", "GGUFFormatError", "QuantError", "DistillError", "VocabAlignmentError"}
HUGE = [0, 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63, 2**64 - 1]
READERS = ["distill.qwen2_gguf:read_gguf", "distill.tokenizer:read_tokenizer", "distill.gguf_file:read_header"]


def _base_model(path: Path) -> bytes:
    from distill.qwen2_gguf import write_gguf
    from distill.synth import PRESETS, synth_tensors
    from distill.tokenizer import Tokenizer

    config = PRESETS["tiny"]
    tokens = [f"t{i}" for i in range(config.vocab_size)]
    write_gguf(path, config, synth_tensors(config, "f32", 1), Tokenizer("gpt2", "default", tokens, [1] * len(tokens), ["t1 t2"]))
    return path.read_bytes()


def _info_at(data: bytes, name: str) -> int:
    """Position just after tensor ``name``'s name in the tensor-info table (its dimension count)."""
    key = struct.pack("<Q", len(name)) + name.encode()
    return data.rindex(key) + len(key)


def _patched(data: bytes, at: int, value: int, width: int = 8) -> bytes:
    return data[:at] + (value % 2 ** (8 * width)).to_bytes(width, "little") + data[at + width:]


def _value_at(data: bytes, key: str, width: int) -> int:
    """Position of the value of scalar metadata ``key`` (after its type)."""
    raw = struct.pack("<Q", len(key)) + key.encode()
    return data.index(raw) + len(raw) + 4


def _written(path: Path, build) -> Path:
    writer = gguf.GGUFWriter(path, "qwen2")
    build(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _root_causes(folder: Path, base: bytes) -> dict[str, Path]:
    embd = _info_at(base, "token_embd.weight")
    files = {
        "dims-0-2^63": _patched(_patched(base, embd + 4, 0), embd + 12, 2**63),
        "rows-2^40": _patched(base, embd + 12, 2**40),
        "block-count-2^32-1": _patched(base, _value_at(base, "qwen2.block_count", 4), 2**32 - 1, 4),
        "kv-count-2^40": _patched(base, 16, 2**40),
        "tensor-count-2^40": _patched(base, 8, 2**40),
        "header-only-20k": _patched(base[:20_000], 8, 2**40),
    }
    found = {}
    for name, data in files.items():
        found[name] = folder / f"{name}.gguf"
        found[name].write_bytes(data)

    def wrong_tokens(w: gguf.GGUFWriter) -> None:
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_array("tokenizer.ggml.tokens", [1, 2, 3])

    def wrong_model(w: gguf.GGUFWriter) -> None:
        w.add_uint32("tokenizer.ggml.model", 7)
        w.add_array("tokenizer.ggml.tokens", ["a", "b"])

    def bool_alignment(w: gguf.GGUFWriter) -> None:
        w.add_bool("general.alignment", True)
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_array("tokenizer.ggml.tokens", ["a", "b"])

    def one_d_embedding(w: gguf.GGUFWriter) -> None:
        w.add_uint32("qwen2.block_count", 1)
        w.add_tensor("token_embd.weight", np.ones(256, dtype=np.float32))

    for name, build in (("tokens-not-strings", wrong_tokens), ("model-not-a-string", wrong_model),
                        ("bool-alignment", bool_alignment), ("one-d-embedding", one_d_embedding)):
        found[name] = _written(folder / f"{name}.gguf", build)
    fifo = folder / "fifo.gguf"
    os.mkfifo(fifo)
    found["fifo"] = fifo
    found["dev-zero"] = Path("/dev/zero")
    return found


def test_readers_bound_what_a_header_declares(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    base = _base_model(tmp_path / "base.gguf")
    header_end = _info_at(base, "output_norm.weight") + 64 if b"output_norm.weight" in base else 4096
    mutations = drawn(st.tuples(st.integers(8, header_end - 8), st.sampled_from(HUGE), st.sampled_from([4, 8]),
                                st.sampled_from(READERS)), 60)
    cases = []
    for index, (at, value, width, reader) in enumerate(mutations):
        path = work / f"m{index}.gguf"
        path.write_bytes(_patched(base, at, value, width))
        cases.append({"kind": "call", "function": reader, "args": [str(path)]})
    roots = _root_causes(work, base)
    for name, path in roots.items():
        for reader in READERS:
            cases.append({"kind": "call", "function": reader, "args": [str(path)], "root": name})
    batch = run_batch(cases, tmp_path)
    for case, result in zip(cases, batch.results):
        assert result["ended"] in ENDINGS, (case, result)
        if result["ended"] != "value":
            assert case["args"][0] in result["message"] or "/dev/zero" in result["message"], (case, result)
    for case, result in zip(cases, batch.results):
        if case.get("root") and case["function"].endswith("read_gguf"):
            assert result["ended"] == "GGUFFormatError", (case["root"], result)
    alignment = [r for c, r in zip(cases, batch.results) if c.get("root") == "bool-alignment"]
    assert all(r["ended"] == "GGUFFormatError" and "alignment" in r["message"] for r in alignment), alignment
    record("GGUF headers (readers)", batch, len(cases))

"""Our GGUF header parser against gguf's own reader and writer, and on broken headers."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest

from distill.errors import GGUFFormatError
from distill.gguf_file import read_header, read_metadata
from distill.tokenizer import read_tokenizer


def reference_metadata(path: Path) -> tuple[dict, dict]:
    """Metadata and value types as gguf.GGUFReader sees them (slow on big vocabularies)."""
    reader = gguf.GGUFReader(path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    values = {k: f.contents() for k, f in fields.items()}
    types = {k: (f.types[0], f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None) for k, f in fields.items()}
    return values, types


@pytest.fixture(scope="session")
def neox_reference(vocab_dir: Path) -> tuple[dict, dict]:
    return reference_metadata(vocab_dir / "ggml-vocab-gpt-neox.gguf")


def as_python(value: object) -> object:
    """A metadata value with numeric arrays (numpy views of the file) as lists, as gguf's reader gives them."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def assert_same_as_reference(path: Path, reference: tuple[dict, dict]) -> None:
    values, types = reference
    header = read_header(path)
    assert list(header.metadata) == list(values)  # same keys, same order
    for key, value in values.items():
        assert as_python(header.metadata[key]) == value, key
        assert header.value_types[key] == types[key], key


def test_metadata_equals_gguf_reader_on_real_vocab(vocab_dir: Path, neox_reference) -> None:
    assert_same_as_reference(vocab_dir / "ggml-vocab-gpt-neox.gguf", neox_reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mpt", "qwen2"])
def test_metadata_equals_gguf_reader_on_every_vocab(vocab_dir: Path, name: str) -> None:
    path = vocab_dir / f"ggml-vocab-{name}.gguf"
    assert_same_as_reference(path, reference_metadata(path))


@pytest.mark.parametrize("name, n_tokens", [("qwen2", 151936), ("llama-bpe", 128256), ("gpt-neox", 50432)])
def test_tokenizer_of_real_vocab(vocab_dir: Path, name: str, n_tokens: int) -> None:
    # Token counts as published with the files (their README), not computed by our code.
    tok = read_tokenizer(vocab_dir / f"ggml-vocab-{name}.gguf")
    assert tok.model == "gpt2"
    assert len(tok.tokens) == len(tok.token_types) == n_tokens
    assert all(isinstance(t, str) for t in tok.tokens[:: n_tokens // 97])
    assert set(tok.token_types) <= {int(t) for t in gguf.TokenType}
    assert all(" " in m for m in tok.merges[:1000])
    assert "tokenizer.ggml.eos_token_id" in tok.extra
    assert "tokenizer.ggml.tokens" not in tok.extra


def test_tokenizer_matches_reference_lists(vocab_dir: Path, neox_reference) -> None:
    values, _ = neox_reference
    tok = read_tokenizer(vocab_dir / "ggml-vocab-gpt-neox.gguf")
    assert tok.tokens == values["tokenizer.ggml.tokens"]
    assert tok.token_types == values["tokenizer.ggml.token_type"]
    assert tok.merges == values["tokenizer.ggml.merges"]
    assert tok.pre is None  # this file has no tokenizer.ggml.pre
    assert tok.extra == {k: v for k, v in values.items() if k.startswith("tokenizer.ggml.") and k.endswith("_id")}


# -- a file made by gguf's writer with every value type ------------------------------------

SCALARS = {
    "t.u8": (gguf.GGUFValueType.UINT8, 250),
    "t.i8": (gguf.GGUFValueType.INT8, -7),
    "t.u16": (gguf.GGUFValueType.UINT16, 65000),
    "t.i16": (gguf.GGUFValueType.INT16, -30000),
    "t.u32": (gguf.GGUFValueType.UINT32, 4_000_000_000),
    "t.i32": (gguf.GGUFValueType.INT32, -2_000_000_000),
    "t.f32": (gguf.GGUFValueType.FLOAT32, 0.1),
    "t.u64": (gguf.GGUFValueType.UINT64, 2**63 + 5),
    "t.i64": (gguf.GGUFValueType.INT64, -(2**62)),
    "t.f64": (gguf.GGUFValueType.FLOAT64, 0.1),
    "t.bool": (gguf.GGUFValueType.BOOL, True),
    "t.str": (gguf.GGUFValueType.STRING, "héllo ✓"),
}


def write_sample(path: Path, alignment: int | None = None) -> None:
    writer = gguf.GGUFWriter(path, "qwen2")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for key, (vtype, value) in SCALARS.items():
        writer.add_key_value(key, value, vtype)
    writer.add_array("t.strs", ["a", "", "Ġ x", "日本"])
    writer.add_key_value("t.i32s", [1, -2, 3], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
    writer.add_key_value("t.f32s", [0.5, -1.25], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
    writer.add_tensor("a", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.add_tensor("b", np.zeros(5, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_every_value_type_from_gguf_writer(tmp_path: Path) -> None:
    path = tmp_path / "all.gguf"
    write_sample(path)
    header = read_header(path)
    meta = header.metadata
    for key, (vtype, value) in SCALARS.items():
        expected = float(np.float32(value)) if vtype == gguf.GGUFValueType.FLOAT32 else value
        assert meta[key] == expected, key
        assert header.value_types[key] == (vtype, None)
    assert meta["general.architecture"] == "qwen2"
    assert meta["t.strs"] == ["a", "", "Ġ x", "日本"]
    for key, values, dtype in (("t.i32s", [1, -2, 3], "<i4"), ("t.f32s", [0.5, -1.25], "<f4")):
        array = meta[key]  # a read-only view of the file, not a copy
        assert isinstance(array, np.ndarray) and array.dtype == np.dtype(dtype) and not array.flags.writeable, key
        assert array.tolist() == values, key
    assert [(t.name, t.qtype, t.ggml_shape) for t in header.tensors] == [
        ("a", gguf.GGMLQuantizationType.F32, (3, 2)),
        ("b", gguf.GGMLQuantizationType.F16, (5,)),
    ]
    reader = gguf.GGUFReader(path)
    assert header.data_offset == reader.data_offset
    assert [t.offset + header.data_offset for t in header.tensors] == [t.data_offset for t in reader.tensors]


def test_custom_alignment_moves_the_data_offset(tmp_path: Path) -> None:
    path = tmp_path / "aligned.gguf"
    write_sample(path, alignment=256)
    header = read_header(path)
    assert header.alignment == 256
    assert header.data_offset == gguf.GGUFReader(path).data_offset
    assert header.data_offset % 256 == 0


# -- broken headers ---------------------------------------------------------------------------


def test_every_truncation_of_the_header_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.gguf"
    write_sample(good)
    data = good.read_bytes()
    header_end = read_header(good).data_offset
    bad = tmp_path / "cut.gguf"
    for cut in range(0, header_end - 31):  # the last bytes before the data are only padding
        bad.write_bytes(data[:cut])
        with pytest.raises(GGUFFormatError) as err:
            read_header(bad)
        assert str(bad) in str(err.value), cut
        assert "truncated" in str(err.value) or cut == 0, (cut, str(err.value))


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(GGUFFormatError, match=r"model\.bin: not a GGUF file: magic is b'GGML', expected b'GGUF'"):
        read_metadata(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 1, 0, 0))
    with pytest.raises(GGUFFormatError, match=r"v1\.gguf: GGUF version 1 is not supported"):
        read_metadata(path)


def test_unknown_value_type_names_the_key(tmp_path: Path) -> None:
    key = b"general.weird"
    path = tmp_path / "weird.gguf"
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<I", 99))
    with pytest.raises(GGUFFormatError, match=r"weird\.gguf: metadata key 'general\.weird' has unknown value type 99"):
        read_metadata(path)


def test_invalid_utf8_token_names_the_index(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    items = [b"ok", b"\xff\xfe"]
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, len(items))
    body += b"".join(struct.pack("<Q", len(s)) + s for s in items)
    path = tmp_path / "utf.gguf"
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + body)
    with pytest.raises(GGUFFormatError, match=r"utf\.gguf: metadata key 'tokenizer\.ggml\.tokens'\[1\] is not valid UTF-8"):
        read_metadata(path)


def test_unknown_tensor_type_names_the_tensor(tmp_path: Path) -> None:
    name = b"blk.0.attn_q.weight"
    info = struct.pack("<Q", len(name)) + name + struct.pack("<IQQIQ", 2, 256, 4, 77, 0)
    path = tmp_path / "qt.gguf"
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 1, 0) + info + bytes(64))
    with pytest.raises(GGUFFormatError, match=r"qt\.gguf: tensor 'blk\.0\.attn_q\.weight' has unknown quantization type 77"):
        read_header(path)


def test_missing_tokens_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notok.gguf"
    write_sample(path)
    with pytest.raises(GGUFFormatError, match=r"notok\.gguf: required metadata key 'tokenizer\.ggml\.model' is missing"):
        read_tokenizer(path)


def test_unreadable_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(GGUFFormatError, match=r"nothere\.gguf: cannot read"):
        read_metadata(tmp_path / "nothere.gguf")


# -- metadata arrays are bounded like tensors -------------------------------------------------


def _one_array_file(path: Path, key: bytes, item_type: int, count: int, payload: bytes) -> None:
    """A GGUF file with one metadata array: ``count`` items of ``item_type`` declared, ``payload`` stored."""
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", int(gguf.GGUFValueType.ARRAY), item_type, count)
    path.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + body + payload)


def test_a_large_numeric_array_is_a_view_of_the_file_not_a_list(tmp_path: Path) -> None:
    """Ten million uint8 items cost no memory: as a Python list they would take 80 MB of pointers."""
    count = 10_000_000
    path = tmp_path / "big-array.gguf"
    _one_array_file(path, b"general.big", int(gguf.GGUFValueType.UINT8), count, bytes(range(256)) * (count // 256)
                    + bytes(count % 256))
    tracemalloc.start()
    try:
        values = read_metadata(path)["general.big"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"reading a 10 MB array allocated {peak} bytes"
    assert isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.shape == (count,)
    assert not values.flags.writeable and int(values[1000]) == 1000 % 256 and int(values[-1]) == 0


@pytest.mark.parametrize("item_type, what", [(int(gguf.GGUFValueType.UINT32), "needs 400000000000 bytes"),
                                             (int(gguf.GGUFValueType.STRING), "declares 100000000000 strings")])
def test_an_array_longer_than_the_file_is_refused_before_reading(tmp_path: Path, item_type: int, what: str) -> None:
    path = tmp_path / "liar.gguf"
    _one_array_file(path, b"general.liar", item_type, 100_000_000_000, bytes(64))
    with pytest.raises(GGUFFormatError, match=rf"liar\.gguf: truncated: metadata key 'general\.liar'.* {what}"):
        read_metadata(path)

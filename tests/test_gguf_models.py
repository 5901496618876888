"""Qwen2 GGUF files: written by us and read by gguf's reader, read back by us, and broken on purpose."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from distill.errors import GGUFFormatError
from distill.gguf_file import read_metadata
from distill.qwen2_gguf import read_gguf, write_gguf
from distill.tokenizer import Tokenizer, read_tokenizer
from distill.synth import PRESETS, synth_tensors

CONFIG = dataclasses.replace(PRESETS["tiny"], vocab_size=300, n_layers=2, tied_embeddings=False)


@pytest.fixture(scope="module")
def small_tokenizer(vocab_dir: Path) -> Tokenizer:
    """The first 300 tokens of the real qwen2 vocabulary (byte-level BPE strings, some non-ASCII)."""
    full = read_tokenizer(vocab_dir / "ggml-vocab-qwen2.gguf")
    return Tokenizer(full.model, full.pre, full.tokens[:300], full.token_types[:300], full.merges[:500], dict(full.extra))


@pytest.fixture(scope="module")
def tensors():
    return list(synth_tensors(CONFIG, "q4_k_m", seed=5))


@pytest.fixture(scope="module")
def written(tmp_path_factory, tensors, small_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("rt") / "model.gguf"
    write_gguf(path, CONFIG, iter(tensors), small_tokenizer)
    return path


def test_gguf_reader_sees_our_tensors_and_keys(written: Path, tensors, small_tokenizer: Tokenizer) -> None:
    reader = gguf.GGUFReader(written)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == "qwen2"
    assert fields["qwen2.block_count"] == 2
    assert fields["qwen2.embedding_length"] == 256
    assert fields["qwen2.feed_forward_length"] == 512
    assert fields["qwen2.attention.head_count"] == 4
    assert fields["qwen2.attention.head_count_kv"] == 2
    assert fields["qwen2.context_length"] == CONFIG.context_length
    assert fields["qwen2.rope.freq_base"] == 1e6
    assert fields["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6, rel=1e-6)
    assert fields["tokenizer.ggml.tokens"] == small_tokenizer.tokens
    assert fields["tokenizer.ggml.token_type"] == small_tokenizer.token_types
    assert fields["tokenizer.ggml.merges"] == small_tokenizer.merges
    for key, value in small_tokenizer.extra.items():
        assert fields[key] == value
    assert fields["tokenizer.chat_template"].startswith("{%")  # kept from the vocabulary file, as llama.cpp's writer does
    assert reader.fields["tokenizer.ggml.eos_token_id"].types == [gguf.GGUFValueType.UINT32]
    assert {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in read_metadata(written).items()} == fields

    by_name = {t.name: t for t in reader.tensors}
    assert list(by_name) == [t.name for t in tensors]
    for t in tensors:
        ref = by_name[t.name]
        assert ref.tensor_type.name == t.qtype
        assert tuple(reversed(ref.shape.tolist())) == t.shape  # gguf gives ggml order (in, out)
        assert np.array_equal(np.asarray(ref.data).view(np.uint8).reshape(-1), t.raw.numpy().reshape(-1)), t.name
        expected = gguf.quants.dequantize(np.asarray(ref.data), ref.tensor_type).reshape(t.shape)
        np.testing.assert_array_equal(t.dequantize().numpy(), expected)
    assert {t.qtype for t in tensors} == {"F32", "Q4_K", "Q6_K"}


def test_read_gguf_gives_back_what_was_written(written: Path, tensors, small_tokenizer: Tokenizer) -> None:
    model = read_gguf(written)
    assert model.config == CONFIG
    assert model.tokenizer == small_tokenizer
    assert list(model.tensors) == [t.name for t in tensors]
    for t in tensors:
        got = model.tensors[t.name]
        assert (got.qtype, got.shape) == (t.qtype, t.shape)
        assert torch.equal(got.raw, t.raw)
    assert model.quantized_bytes == sum(t.nbytes for t in tensors)
    assert model.quantized_bytes < written.stat().st_size < model.quantized_bytes + 64 * 1024


def test_list_and_generator_inputs_write_the_same_bytes(tmp_path: Path, written: Path, tensors, small_tokenizer) -> None:
    again = tmp_path / "again.gguf"
    write_gguf(again, CONFIG, tensors, small_tokenizer)
    assert again.read_bytes() == written.read_bytes()


def test_tied_model_has_no_output_tensor(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, tied_embeddings=True)
    path = tmp_path / "tied.gguf"
    write_gguf(path, config, synth_tensors(config, "f32", seed=1), None)
    model = read_gguf(path)
    assert model.config.tied_embeddings and "output.weight" not in model.tensors
    assert model.tokenizer is None
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(path).tensors}


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def broken():
        yield from list(synth_tensors(CONFIG, "f32", seed=1))[:5]
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_gguf(tmp_path / "out.gguf", CONFIG, broken(), None)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GGUFFormatError, match=r"out\.gguf: cannot write: tensor 'output\.weight' is missing"):
        write_gguf(tmp_path / "out.gguf", CONFIG, list(synth_tensors(CONFIG, "f32", seed=1))[:-1], None)
    assert list(tmp_path.iterdir()) == []


# -- broken files: each error names the file, the tensor or key, and what was expected ------------------


def patched(src: Path, dst: Path, edit) -> Path:
    data = bytearray(src.read_bytes())
    edit(data)
    dst.write_bytes(bytes(data))
    return dst


def replace_once(data: bytearray, old: bytes, new: bytes, after: bytes = b"") -> None:
    start = data.index(after) if after else 0
    at = data.index(old, start)
    data[at : at + len(old)] = new


def tensor_info_at(data: bytearray, name: str) -> int:
    """Byte position just after the name of tensor ``name`` in the tensor-info table."""
    key = struct.pack("<Q", len(name)) + name.encode()
    return data.rindex(key) + len(key)


def test_truncated_tensor_data_names_the_last_tensor(tmp_path: Path, written: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(written.read_bytes()[:-100])
    with pytest.raises(GGUFFormatError, match=r"cut\.gguf: truncated: tensor 'output\.weight' \(Q6_K, shape \(300, 256\)\) needs bytes \d+\.\.\d+ but the file has \d+ bytes"):
        read_gguf(cut)


def test_truncated_header(tmp_path: Path, written: Path) -> None:
    cut = tmp_path / "head.gguf"
    cut.write_bytes(written.read_bytes()[:5000])
    with pytest.raises(GGUFFormatError, match=r"head\.gguf: truncated: metadata key 'tokenizer\.ggml\.merges' declares 500 strings but the file ends after \d+"):
        read_gguf(cut)


def test_wrong_magic(tmp_path: Path, written: Path) -> None:
    bad = patched(written, tmp_path / "magic.gguf", lambda d: d.__setitem__(slice(0, 4), b"GGJT"))
    with pytest.raises(GGUFFormatError, match=r"magic\.gguf: not a GGUF file: magic is b'GGJT', expected b'GGUF'"):
        read_gguf(bad)


def test_tensor_byte_size_mismatch_names_the_tensor(tmp_path: Path, written: Path) -> None:
    def grow(data: bytearray) -> None:  # blk.0.attn_q.weight: ggml dims (256, 256) -> (256, 512)
        at = tensor_info_at(data, "blk.0.attn_q.weight") + 4 + 8
        data[at : at + 8] = struct.pack("<Q", 512)

    bad = patched(written, tmp_path / "size.gguf", grow)
    with pytest.raises(GGUFFormatError, match=r"size\.gguf: tensor 'blk\.0\.attn_q\.weight' has \d+ bytes at data offset \d+, which runs into tensor 'blk\.0\.attn_q\.bias'"):
        read_gguf(bad)


def test_rows_not_whole_blocks_names_the_tensor(tmp_path: Path, written: Path) -> None:
    def shrink(data: bytearray) -> None:  # ggml dims (256, 256) -> (200, 256): not whole Q4_K blocks
        at = tensor_info_at(data, "blk.1.ffn_up.weight") + 4
        data[at : at + 8] = struct.pack("<Q", 200)

    bad = patched(written, tmp_path / "blocks.gguf", shrink)
    with pytest.raises(GGUFFormatError, match=r"blocks\.gguf: tensor 'blk\.1\.ffn_up\.weight' with shape \(512, 200\): 200 weights are not a whole number of Q4_K blocks of 256"):
        read_gguf(bad)


@pytest.mark.parametrize("code, message", [
    (13, r"tensor 'blk\.0\.ffn_gate\.weight' has type Q5_K, which is not supported \(supported: F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K\)"),
    (99, r"tensor 'blk\.0\.ffn_gate\.weight' has unknown quantization type 99"),
])
def test_unsupported_or_unknown_quant_type_names_the_tensor(tmp_path: Path, written: Path, code: int, message: str) -> None:
    def retype(data: bytearray) -> None:
        at = tensor_info_at(data, "blk.0.ffn_gate.weight") + 4 + 2 * 8
        data[at : at + 4] = struct.pack("<I", code)

    bad = patched(written, tmp_path / "type.gguf", retype)
    with pytest.raises(GGUFFormatError, match=r"type\.gguf: " + message):
        read_gguf(bad)


def test_unknown_architecture(tmp_path: Path, written: Path) -> None:
    bad = patched(written, tmp_path / "arch.gguf", lambda d: replace_once(d, b"qwen2", b"qwen9", after=b"general.architecture"))
    with pytest.raises(GGUFFormatError, match=r"arch\.gguf: metadata key 'general\.architecture' is 'qwen9': unknown architecture \(expected 'qwen2'\)"):
        read_gguf(bad)


@pytest.mark.parametrize("key", ["qwen2.rope.freq_base", "qwen2.attention.head_count_kv", "qwen2.block_count"])
def test_missing_required_key_is_named(tmp_path: Path, written: Path, key: str) -> None:
    renamed = key[:-1] + ("X" if key[-1] != "X" else "Y")
    bad = patched(written, tmp_path / "key.gguf", lambda d: replace_once(d, key.encode(), renamed.encode()))
    with pytest.raises(GGUFFormatError, match=rf"key\.gguf: required metadata key '{key}' is missing"):
        read_gguf(bad)


@pytest.mark.parametrize("tensor, qtype, scale_offset, field", [
    ("blk.0.ffn_up.weight", "Q4_K", 0, "d"),
    ("blk.1.attn_k.weight", "Q4_K", 2, "dmin"),
    ("blk.1.ffn_down.weight", "Q6_K", 208, "d"),
])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_block_scale_names_the_tensor(tmp_path: Path, written: Path, tensor: str, qtype: str, scale_offset: int, field: str, bad: float) -> None:
    info = next(t for t in gguf.GGUFReader(written).tensors if t.name == tensor)
    assert info.tensor_type.name == qtype
    block = 3
    at = info.data_offset + block * gguf.GGML_QUANT_SIZES[info.tensor_type][1] + scale_offset

    def poison(data: bytearray) -> None:
        data[at : at + 2] = np.array([bad], dtype=np.float16).tobytes()

    path = patched(written, tmp_path / "nan.gguf", poison)
    with pytest.raises(GGUFFormatError, match=rf"nan\.gguf: tensor '{tensor}': {qtype} block {block} has a non-finite fp16 scale {field}=(nan|inf)"):
        read_gguf(path)


def test_token_count_must_match_embedding_rows(tmp_path: Path, small_tokenizer: Tokenizer) -> None:
    path = tmp_path / "rows.gguf"
    short = dataclasses.replace(small_tokenizer, tokens=small_tokenizer.tokens[:299], token_types=small_tokenizer.token_types[:299])
    write_gguf(path, CONFIG, synth_tensors(CONFIG, "f32", seed=2), short)
    with pytest.raises(GGUFFormatError, match=r"rows\.gguf: 'tokenizer\.ggml\.tokens' has 299 tokens, expected one per embedding row of 'token_embd\.weight' \(300\)"):
        read_gguf(path)


def test_vocabulary_only_file_is_not_a_model(vocab_dir: Path) -> None:
    with pytest.raises(GGUFFormatError, match=r"ggml-vocab-gpt-neox\.gguf: tensor 'token_embd\.weight' is missing"):
        read_gguf(vocab_dir / "ggml-vocab-gpt-neox.gguf")


@pytest.mark.parametrize("quant, file_type", [("f32", gguf.LlamaFileType.ALL_F32), ("bf16", gguf.LlamaFileType.MOSTLY_BF16),
                                              ("q4_k_m", gguf.LlamaFileType.MOSTLY_Q4_K_M),
                                              ("q4_k", gguf.LlamaFileType.MOSTLY_Q4_K_M)])
def test_files_carry_llama_cpp_file_type_and_quantization_version(tmp_path: Path, quant: str, file_type: int) -> None:
    """llama.cpp guesses the type of a file without ``general.file_type`` from its most common tensor type."""
    path = tmp_path / f"{quant}.gguf"
    write_gguf(path, CONFIG, synth_tensors(CONFIG, quant, seed=3), None)
    fields = gguf.GGUFReader(path).fields
    assert fields["general.file_type"].contents() == int(file_type)
    assert fields["general.file_type"].types == [gguf.GGUFValueType.UINT32]
    assert fields["general.quantization_version"].contents() == 2


def test_a_file_type_given_is_written_and_a_key_of_the_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "named.gguf"
    extra = {"general.name": ("tiny student", gguf.GGUFValueType.STRING, None),
             "t.ids": (np.array([3, 1, 2], dtype="<i4"), gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)}
    write_gguf(path, CONFIG, synth_tensors(CONFIG, "f32", seed=3), None, file_type=gguf.LlamaFileType.MOSTLY_F16,
               metadata=extra)
    fields = gguf.GGUFReader(path).fields
    assert fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_F16)
    assert fields["general.name"].contents() == "tiny student" and fields["t.ids"].contents() == [3, 1, 2]
    clash = {"general.file_type": (0, gguf.GGUFValueType.UINT32, None)}
    with pytest.raises(GGUFFormatError, match="'general.file_type' is set by the writer itself"):
        write_gguf(tmp_path / "clash.gguf", CONFIG, synth_tensors(CONFIG, "f32", seed=3), None, metadata=clash)
    assert not (tmp_path / "clash.gguf").exists()

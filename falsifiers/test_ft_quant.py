"""Falsifiers of distill-frozen-q4k-teacher-v1: the PyTorch decoding of Q5_0, Q8_0 and the plain types,
the output options of ``dequantize``, and what it refuses.

The reference is gguf's dequantizer (numpy), never the code under test; every literal below (block
sizes, type names, messages) is the documented one, spelled out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as reference_dequantize

from distill import quant
from distill.errors import KernelUnavailableError, QuantError

#: what these falsifiers check: the decoding path of ``distill.quant`` (not the quantizers)
DECODING = [f"distill.quant:{name}" for name in (
    "dequantize", "_output", "_as_blocks", "_words", "_dequant_torch", "_dequant_q8_0", "_dequant_q5_0",
    "_dequant_q4_k", "_dequant_q6_k", "_q4_k_scales_mins", "_fp16_field", "qtype_name", "block_elems",
    "block_bytes", "byte_size", "raw_shape", "TensorData.dequantize")]
#: llama.cpp block sizes: bytes per block, weights per block
SIZES = {"Q8_0": (34, 32), "Q5_0": (22, 32), "Q4_K": (144, 256), "Q6_K": (210, 256)}
#: byte offsets of the fp16 scales in a block
SCALES = {"Q8_0": (0,), "Q5_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,)}


def _blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random bytes in every field, finite fp16 scales."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(n_blocks, SIZES[qtype][0]), dtype=np.uint8)
    for offset in SCALES[qtype]:
        scales = (rng.standard_normal(n_blocks) * 2.0 ** rng.integers(-12, 8, size=n_blocks)).astype(np.float16)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw


def _want(raw: np.ndarray, qtype: str) -> np.ndarray:
    return np.ascontiguousarray(reference_dequantize(raw, GGMLQuantizationType[qtype]), dtype=np.float32).reshape(-1)


def _assert_bits(got: torch.Tensor, want: np.ndarray, what: object) -> None:
    got32 = got.float().reshape(-1).numpy()
    differ = got32.view(np.uint32) != want.view(np.uint32)
    assert got32.shape == want.shape and not differ.any(), (what, got32.shape, want.shape, int(differ.sum()))


@pytest.mark.falsifies("FT-FROZEN-007", covers=DECODING, mutants=["q5-0-fifth-bit-dropped", "q8-0-unsigned"])
def test_legacy_blocks_decode_bit_exact_with_gguf() -> None:
    for seed, qtype in enumerate(("Q5_0", "Q8_0")):
        raw = _blocks(qtype, 6, seed).reshape(2, 3 * SIZES[qtype][0])  # rows of several blocks
        got = quant.dequantize(torch.from_numpy(raw), qtype, kernel="torch")
        assert got.dtype == torch.float32 and tuple(got.shape) == (2, 3 * 32), (qtype, got.dtype, got.shape)
        _assert_bits(got, _want(raw, qtype), qtype)
        for dtype, name in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
            rounded = torch.from_numpy(_want(raw, qtype)).to(dtype)  # torch rounds to nearest even
            for spelled in (dtype, name):
                got = quant.dequantize(torch.from_numpy(raw), qtype, kernel="torch", dtype=spelled)
                assert got.dtype == dtype and torch.equal(got.reshape(-1), rounded), (qtype, spelled)


@pytest.mark.falsifies("FT-FROZEN-007", covers=DECODING, mutants=["misaligned-words-not-copied"])
def test_blocks_decode_from_any_start_and_row_stride() -> None:
    """Bytes that start at an odd address, or rows padded to an odd stride, decode as the packed blocks."""
    for seed, qtype in enumerate(("Q4_K", "Q6_K", "Q5_0", "Q8_0")):
        size = SIZES[qtype][0]
        raw = _blocks(qtype, 4, seed + 20)
        want = _want(raw, qtype)
        shifted = torch.zeros(4 * size + 1, dtype=torch.uint8)
        shifted[1:] = torch.from_numpy(raw.reshape(-1))
        _assert_bits(quant.dequantize(shifted[1:].reshape(2, 2 * size), qtype), want, (qtype, "odd start"))
        padded = torch.zeros(4, size + 1, dtype=torch.uint8)
        padded[:, :size] = torch.from_numpy(raw)
        _assert_bits(quant.dequantize(padded[:, :size], qtype), want, (qtype, "odd row stride"))


@pytest.mark.falsifies("FT-FROZEN-007", covers=DECODING, mutants=["dequant-out-ignored", "dequant-plain-aliases-raw"])
def test_plain_types_and_out_tensors() -> None:
    values = torch.tensor([[1.5, -2.25, 0.0, 3e-3], [7.0, -0.5, 65504.0, -1e-4]])
    for qtype, dtype in (("F32", torch.float32), ("F16", torch.float16), ("BF16", torch.bfloat16)):
        raw = values.to(dtype).view(torch.uint8).clone()  # (2, 4 * bytes per weight)
        got = quant.dequantize(raw, qtype)
        assert got.dtype == torch.float32 and torch.equal(got, values.to(dtype).float()), qtype
        raw.zero_()  # the result is new memory, never a view of the (possibly memory-mapped) bytes
        assert torch.equal(got, values.to(dtype).float()), qtype
    assert quant.dequantize(torch.zeros(0, 34, dtype=torch.uint8), "Q8_0").shape == (0, 32)
    raw = _blocks("Q8_0", 3, 5)
    want = torch.from_numpy(_want(raw, "Q8_0"))
    for dtype in (torch.float32, torch.bfloat16):
        out = torch.full((96,), float("nan"), dtype=dtype)
        result = quant.dequantize(torch.from_numpy(raw), "Q8_0", dtype=dtype, out=out)
        assert result.data_ptr() == out.data_ptr() and tuple(result.shape) == (3, 32), dtype
        assert torch.equal(out, want.to(dtype)), dtype
    data = quant.TensorData("blk.0.attn_q.weight", "Q8_0", (3, 32), torch.from_numpy(raw))
    assert data.nbytes == 3 * 34
    assert torch.equal(data.dequantize(), want.reshape(3, 32))
    assert torch.equal(data.dequantize(dtype=torch.bfloat16), want.reshape(3, 32).to(torch.bfloat16))
    assert torch.equal(data.dequantize(dtype=torch.float64), want.reshape(3, 32).double())
    inf_scale = raw.copy()
    inf_scale[1, 0:2] = np.array([np.inf], dtype=np.float16).view(np.uint8)
    stored = quant.TensorData("blk.0.attn_k.weight", "Q8_0", (3, 32), torch.from_numpy(inf_scale))
    for dtype in (torch.float32, torch.float64):  # tensors read from a file are checked at load, not here
        assert not bool(torch.isfinite(stored.dequantize(dtype=dtype)[1]).all()), dtype
    assert quant.byte_size(512, "Q4_K") == 288 and quant.raw_shape((2, 3, 64), "Q8_0") == (2, 3, 68)
    many = _blocks("Q8_0", 8192 + 5, 6)  # more blocks than one CPU chunk of 2^18 weights
    _assert_bits(quant.dequantize(torch.from_numpy(many), "Q8_0"), _want(many, "Q8_0"), "several chunks")
    assert quant.block_elems(GGMLQuantizationType.Q6_K) == 256 and quant.block_bytes("Q5_0") == 22


@pytest.mark.falsifies("FT-FROZEN-007", covers=DECODING, mutants=["dequant-bad-out-accepted"])
def test_what_cannot_be_decoded_is_refused_by_name() -> None:
    raw = torch.from_numpy(_blocks("Q8_0", 2, 3))
    with pytest.raises(QuantError, match=r"^dequantize: dtype must be one of float32, float16, bfloat16, got torch.float64$"):
        quant.dequantize(raw, "Q8_0", dtype=torch.float64)
    with pytest.raises(QuantError, match="got float64$"):
        quant.dequantize(raw, "Q8_0", dtype="float64")
    for out in (torch.empty(64, dtype=torch.float16), torch.empty(63), torch.empty(2, 64)[:, :32],
                torch.empty(64, device="meta")):
        with pytest.raises(QuantError, match=r"out must be a contiguous torch.float32 tensor of 64 entries on cpu"):
            quant.dequantize(raw, "Q8_0", out=out)
    with pytest.raises(QuantError, match=r"^Q8_0 data has 67 bytes per row, expected a multiple of 34$"):
        quant.dequantize(torch.zeros(2, 67, dtype=torch.uint8), "Q8_0")
    with pytest.raises(QuantError, match=r"^Q4_K data must be rows of bytes, got a 0-dimensional tensor$"):
        quant.dequantize(torch.tensor(7, dtype=torch.uint8), "Q4_K")
    with pytest.raises(QuantError, match=r"^unsupported quantization type 'Q4_0' \(supported: F32, F16, BF16, Q8_0, "
                                         r"Q5_0, Q4_K, Q6_K\)$"):
        quant.dequantize(raw, GGMLQuantizationType.Q4_0)
    with pytest.raises(KernelUnavailableError, match=r"^dequantize Q8_0: kernel must be one of auto, torch, triton, got 'cuda'$"):
        quant.dequantize(raw, "Q8_0", kernel="cuda")
    with pytest.raises(QuantError, match=r"^100 weights are not a whole number of Q8_0 blocks of 32$"):
        quant.byte_size(100, "Q8_0")

"""Q4_K/Q6_K/Q8_0/BF16/F16 blocks: dequantization against gguf's, quantization error bounds, bad blocks."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType

from distill.errors import QuantError
from distill.quant import QTYPES, block_bytes, block_elems, check_scales, dequantize, quantize

BLOCK_TYPES = ("Q8_0", "Q5_0", "Q4_K", "Q6_K")
#: byte offsets of the fp16 block scales, from the block layouts of llama.cpp (ggml-common.h)
SCALE_OFFSETS = {"Q8_0": (0,), "Q5_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,)}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    return request.param


def random_blocks(qtype: str, rows: int, blocks_per_row: int, seed: int) -> np.ndarray:
    """Random bytes, with every fp16 scale replaced by a finite value (normal, subnormal, zero, large)."""
    rng = np.random.default_rng(seed)
    n = rows * blocks_per_row
    raw = rng.integers(0, 256, size=(n, block_bytes(qtype)), dtype=np.uint8)
    for offset in SCALE_OFFSETS.get(qtype, ()):
        scales = rng.normal(0, 1, n) * 10.0 ** rng.integers(-7, 4, n)
        scales[:: max(n // 16, 1)] = 0.0
        raw[:, offset : offset + 2] = scales.astype(np.float16).view(np.uint8).reshape(n, 2)
    if qtype == "F16":  # random finite halfs
        raw = rng.normal(0, 100, size=(n,)).astype(np.float16).view(np.uint8).reshape(n, 2)
    return raw.reshape(rows, -1)


def gguf_dequantize(raw: np.ndarray, qtype: str) -> np.ndarray:
    return gguf.quants.dequantize(raw, GGMLQuantizationType[qtype]).reshape(raw.shape[0], -1)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q5_0", "Q4_K", "Q6_K", "BF16", "F16", "F32"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dequantize_is_bit_exact_with_gguf_on_random_blocks(qtype: str, seed: int, device: str) -> None:
    per_row = 8 if block_elems(qtype) > 1 else 512
    raw = random_blocks(qtype, rows=37, blocks_per_row=per_row, seed=seed)
    if qtype == "F32":
        raw = np.random.default_rng(seed).normal(0, 1, size=(37, per_row)).astype(np.float32).view(np.uint8)
    expected = gguf_dequantize(raw, qtype)
    ours = dequantize(torch.from_numpy(raw).to(device), qtype)
    assert ours.device.type == device and ours.dtype == torch.float32
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours.cpu().numpy().view(np.uint32), expected.view(np.uint32))


def test_dequantize_keeps_leading_dimensions() -> None:
    raw = torch.from_numpy(random_blocks("Q4_K", rows=6, blocks_per_row=2, seed=3)).reshape(2, 3, 288)
    out = dequantize(raw, "Q4_K")
    assert out.shape == (2, 3, 512)
    np.testing.assert_array_equal(out.reshape(6, 512).numpy(), gguf_dequantize(raw.reshape(6, 288).numpy(), "Q4_K"))


def normal_weights(rows: int, cols: int, seed: int, std: float = 1.0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * std


# Relative RMS error bounds on N(0, s^2) data, from the measured errors (Q4_K 0.0717, Q6_K 0.0177,
# Q5_0 0.0425, Q8_0 0.0054, BF16 0.0017 of s) plus margin. Uniform rounding over the range of 32 normal samples
# (about 4.1 s in 15 steps) alone gives 0.079 s for Q4_K: the scale search must beat that.
ERROR_BOUNDS = {"Q4_K": 0.074, "Q6_K": 0.0185, "Q5_0": 0.044, "Q8_0": 0.0056, "BF16": 0.0018, "F16": 0.0003, "F32": 0.0}


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("std", [0.02, 1.0, 300.0])
def test_round_trip_error_is_bounded(qtype: str, std: float, device: str) -> None:
    x = normal_weights(64, 1024, seed=7, std=std).to(device)
    raw = quantize(x, qtype)
    assert raw.dtype == torch.uint8 and raw.device.type == device
    assert raw.shape == (64, 1024 // block_elems(qtype) * block_bytes(qtype))
    y = dequantize(raw, qtype)
    rel = float((y - x).pow(2).mean().sqrt() / x.std())
    assert rel <= ERROR_BOUNDS[qtype], rel
    # the blocks are valid for the independent reader too
    np.testing.assert_array_equal(y.cpu().numpy(), gguf_dequantize(raw.cpu().numpy(), qtype))


@pytest.mark.parametrize("qtype", ["Q8_0", "Q5_0", "BF16"])
def test_quantize_matches_gguf_where_gguf_can_quantize(qtype: str) -> None:
    x = normal_weights(16, 512, seed=11)
    x[0, :7] = torch.tensor([0.0, -0.0, 1e-30, 3.0e38 if qtype == "BF16" else 6e5, -2.5, 0.5, float("inf") if qtype == "BF16" else 1.5])
    expected = gguf.quants.quantize(x.numpy(), GGMLQuantizationType[qtype]).view(np.uint8).reshape(16, -1)
    np.testing.assert_array_equal(quantize(x, qtype).numpy(), expected)


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_special_blocks_round_trip(qtype: str) -> None:
    rows = torch.stack(
        [
            torch.zeros(256),
            torch.full((256,), 0.25),
            torch.full((256,), -3.0),
            torch.linspace(-1, 1, 256),
            torch.cat([torch.zeros(255), torch.tensor([5.0])]),
            torch.linspace(0.5, 2.0, 256),  # all positive: min offset clipped at zero
        ]
    )
    y = dequantize(quantize(rows, qtype), qtype)
    assert torch.equal(y[0], rows[0])
    worst = (y - rows).abs().amax(dim=1) / rows.abs().amax(dim=1).clamp(min=1e-12)
    assert float(worst[1:].max()) < 0.07, worst


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_non_finite_input_is_refused(qtype: str) -> None:
    x = torch.zeros(2, 256)
    x[1, 17] = float("nan")
    with pytest.raises(QuantError, match=f"cannot quantize to {qtype}: the input has NaN or Inf"):
        quantize(x, qtype)


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_weights_beyond_fp16_scales_are_refused(qtype: str) -> None:
    with pytest.raises(QuantError, match=f"cannot quantize to {qtype}: the block scale .* overflows fp16"):
        quantize(torch.full((1, 256), 1e12), qtype)


@pytest.mark.parametrize("qtype, offset, field", [("Q4_K", 0, "d"), ("Q4_K", 2, "dmin"), ("Q6_K", 208, "d"), ("Q8_0", 0, "d"), ("Q5_0", 0, "d")])
@pytest.mark.parametrize("bad", [np.float16(np.nan), np.float16(np.inf), np.float16(-np.inf)])
def test_non_finite_block_scale_is_named(qtype: str, offset: int, field: str, bad: np.float16) -> None:
    raw = random_blocks(qtype, rows=4, blocks_per_row=3, seed=5)
    blocks = raw.reshape(12, -1)
    blocks[7, offset : offset + 2] = np.array([bad], dtype=np.float16).view(np.uint8)
    with pytest.raises(QuantError, match=rf"{qtype} block 7 has a non-finite fp16 scale {field}=(nan|inf|-inf) \(1 of 12 blocks\)"):
        dequantize(torch.from_numpy(raw), qtype)
    with pytest.raises(QuantError):
        check_scales(torch.from_numpy(raw), qtype)


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_wrong_byte_length_is_refused(qtype: str) -> None:
    raw = torch.zeros(3, block_bytes(qtype) * 2 + 1, dtype=torch.uint8)
    with pytest.raises(QuantError, match=f"{qtype} data has {block_bytes(qtype) * 2 + 1} bytes per row, expected a multiple of {block_bytes(qtype)}"):
        dequantize(raw, qtype)


def test_wrong_dtype_and_type_and_width_are_refused() -> None:
    with pytest.raises(QuantError, match="Q4_K data must be uint8 bytes, got torch.float32"):
        dequantize(torch.zeros(1, 144), "Q4_K")
    with pytest.raises(QuantError, match="unsupported quantization type 'Q5_K'"):
        dequantize(torch.zeros(1, 176, dtype=torch.uint8), "Q5_K")
    with pytest.raises(QuantError, match="cannot quantize rows of 100 weights to Q6_K: not a multiple of the block size 256"):
        quantize(torch.zeros(2, 100), "Q6_K")


def test_block_geometry_matches_gguf() -> None:
    for name in QTYPES:
        assert (block_elems(name), block_bytes(name)) == gguf.GGML_QUANT_SIZES[GGMLQuantizationType[name]]
        assert block_bytes(GGMLQuantizationType[name]) == block_bytes(name)

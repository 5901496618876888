"""The Triton dequantization kernels (interpreted on CPU) against gguf's dequantizer and the PyTorch path, bit for bit."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from distill import quant
from distill.errors import KernelUnavailableError, QuantError
from distill.kernels import runtime
from distill.synth import random_blocks
from kernel_data import DEVICE, KERNEL_QTYPES, assert_interpreted_without_cuda, random_bit_blocks

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _gguf_bits(raw: torch.Tensor, qtype: str, dtype: torch.dtype) -> torch.Tensor:
    """gguf's float32 weights rounded to ``dtype`` by torch (to nearest even), as integer bits."""
    weights = gguf.quants.dequantize(raw.cpu().numpy(), gguf.GGMLQuantizationType[qtype])
    return torch.from_numpy(np.ascontiguousarray(weights).reshape(-1)).to(dtype).view(_BITS[dtype])


def test_kernels_run_interpreted_without_cuda() -> None:
    assert_interpreted_without_cuda()
    assert runtime.use_triton("triton", DEVICE, "test")


@pytest.mark.parametrize("qtype", KERNEL_QTYPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("blocks_per_program", [1, 4])
def test_random_bit_patterns_are_bit_exact(qtype: str, dtype: torch.dtype, blocks_per_program: int) -> None:
    raw = random_bit_blocks(qtype, 7, seed=KERNEL_QTYPES.index(qtype) * 10 + blocks_per_program)  # 7: a partial last program
    out = torch.empty(7 * quant.block_elems(qtype), dtype=dtype, device=DEVICE)
    runtime.load("dequant").dequantize_into(raw.to(DEVICE), qtype, out, blocks_per_program=blocks_per_program)
    want = _gguf_bits(raw, qtype, dtype)
    assert torch.equal(out.cpu().view(_BITS[dtype]), want)
    assert torch.equal(quant.dequantize(raw, qtype, kernel="torch", dtype=dtype).view(_BITS[dtype]).reshape(-1), want)


@pytest.mark.parametrize("qtype", KERNEL_QTYPES)
def test_public_entry_on_realistic_blocks(qtype: str) -> None:
    cols = 512 if qtype.endswith("_K") else 64
    raw = random_blocks(qtype, (3, cols), 0.02, torch.Generator().manual_seed(5), torch.device("cpu"))
    for dtype in DTYPES:
        got = quant.dequantize(raw.to(DEVICE), qtype, kernel="triton", dtype=dtype)
        assert got.shape == (3, cols) and got.dtype == dtype
        assert torch.equal(got.cpu().view(_BITS[dtype]), _gguf_bits(raw, qtype, dtype).reshape(3, cols))


def test_out_buffer_is_written_and_checked() -> None:
    raw = random_blocks("Q4_K", (2, 256), 0.02, torch.Generator().manual_seed(6), torch.device("cpu")).to(DEVICE)
    scratch = torch.full((512,), float("nan"), dtype=torch.bfloat16, device=DEVICE)
    got = quant.dequantize(raw, "Q4_K", kernel="triton", dtype=torch.bfloat16, out=scratch)
    assert got.data_ptr() == scratch.data_ptr() and got.shape == (2, 256)
    assert torch.equal(got, quant.dequantize(raw, "Q4_K", kernel="torch", dtype=torch.bfloat16))
    with pytest.raises(QuantError, match="out must be"):
        quant.dequantize(raw, "Q4_K", dtype=torch.float32, out=scratch)
    with pytest.raises(QuantError, match="dtype"):
        quant.dequantize(raw, "Q4_K", dtype=torch.float64)


def test_triton_where_it_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = random_bit_blocks("Q8_0", 1, seed=1)
    with pytest.raises(KernelUnavailableError, match="kernel must be one of"):
        quant.dequantize(raw, "Q8_0", kernel="cuda")
    monkeypatch.setenv(runtime.INTERPRET_VAR, "0")
    with pytest.raises(KernelUnavailableError, match="CUDA tensors"):
        quant.dequantize(raw, "Q8_0", kernel="triton")
    assert torch.equal(quant.dequantize(raw, "Q8_0", kernel="auto"), quant.dequantize(raw, "Q8_0", kernel="torch"))

"""Falsifiers of distill-frozen-q4k-teacher-v1 on CPU: frozen, resident bytes, parity, block formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as reference_dequantize

from distill import quant

#: byte offsets of the fp16 super-block scales (d, dmin) per type (llama.cpp block layouts)
FP16_SCALE_OFFSETS = {"Q4_K": (0, 2), "Q6_K": (208,)}
BLOCK_BYTES = {"Q4_K": 144, "Q6_K": 210}


def _random_blocks(qtype: str, rows: int, blocks_per_row: int, seed: int) -> np.ndarray:
    """Random bytes for every field, with finite fp16 scales (the contract's domain)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, blocks_per_row, BLOCK_BYTES[qtype]), dtype=np.uint8)
    for offset in FP16_SCALE_OFFSETS[qtype]:
        scales = (rng.standard_normal((rows, blocks_per_row)) * rng.choice([1e-4, 1e-2, 1.0, 300.0])).astype(np.float16)
        raw[:, :, offset:offset + 2] = scales.view(np.uint8).reshape(rows, blocks_per_row, 2)
    return raw.reshape(rows, blocks_per_row * BLOCK_BYTES[qtype])


@pytest.mark.falsifies("FT-FROZEN-004", mutants=[
    "q4k-nibble-order-swapped", "q4k-scale-high-bits-dropped", "q6k-high-bits-dropped"])
def test_block_dequantization_bit_exact_with_reference() -> None:
    for qtype in ("Q4_K", "Q6_K"):
        for seed, (rows, blocks_per_row) in enumerate([(1, 1), (7, 3), (64, 8)]):
            raw = _random_blocks(qtype, rows, blocks_per_row, seed)
            got = quant.dequantize(torch.from_numpy(raw), qtype).numpy()
            want = reference_dequantize(raw, GGMLQuantizationType[qtype]).astype(np.float32)
            assert got.shape == want.shape, (qtype, got.shape, want.shape)
            differ = got.view(np.uint32) != want.view(np.uint32)
            assert not differ.any(), (qtype, rows, blocks_per_row, int(differ.sum()), got[differ][:4], want[differ][:4])

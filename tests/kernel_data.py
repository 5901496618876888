"""Inputs shared by the kernel tests: the device the kernels run on, and random quantized blocks."""

from __future__ import annotations

import numpy as np
import torch

from distill import quant
from distill.kernels import runtime

#: CUDA where present (the compiled kernels); else the CPU through Triton's interpreter.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
KERNEL_QTYPES = ("Q4_K", "Q6_K", "Q5_0", "Q8_0")


def random_bit_blocks(qtype: str, n_blocks: int, seed: int) -> torch.Tensor:
    """``n_blocks`` blocks of uniformly random bytes whose fp16 scales are random finite values.

    Every bit of the quants and packed scales is random, so that each bit pattern of
    the layout occurs; only d (and dmin) are redrawn where their bits would be NaN/Inf.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n_blocks, quant.block_bytes(qtype)), dtype=np.uint8)
    for offset in quant.SCALE_FIELDS[qtype].values():
        scales = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16) * np.float16(2.0 ** -rng.integers(0, 12))
        blocks[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return torch.from_numpy(blocks)


def assert_interpreted_without_cuda() -> None:
    """Without CUDA the kernels must run interpreted: never skipped, never silently on PyTorch."""
    if DEVICE.type == "cpu":
        assert runtime.interpreted(), f"no CUDA and {runtime.INTERPRET_VAR} is not 1: the kernels cannot run"

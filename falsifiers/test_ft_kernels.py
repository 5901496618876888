"""Falsifiers of distill-kernels-v1: the Triton kernels against independent references.

The kernels run compiled on a CUDA device, else in Triton's interpreter on CPU
tensors (``distill.kernels.runtime``). The references are float64 numpy
(``ft_reference``) and gguf's dequantizer, never the code under test.
"""

from __future__ import annotations

import math

import gguf
import numpy as np
import pytest
import torch

import ft_reference as ref
from distill import kd, quant
from distill.kernels import runtime

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
#: (rows, vocab, temperature): odd vocabularies of one and of several kernel blocks (4096 wide), T != 1
KD_CASES = [(4, 97, 2.5), (3, 5001, 0.7), (2, 9000, 4.0)]
LOSS_RTOL, GRAD_ATOL = 1e-4, 1e-5


def test_kernels_run_where_the_falsifiers_run() -> None:
    """Without CUDA the kernels run in the interpreter: a falsifier here never falls back to PyTorch."""
    assert runtime.use_triton("triton", DEVICE, "falsifier")
    assert DEVICE.type == "cuda" or runtime.interpreted()


def _rising_logits(rows: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits whose row maxima grow from block to block; teacher -inf on some tokens."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.0, 12.0, vocab)
    s = torch.randn(rows, vocab, generator=gen) * 2 + ramp
    t = torch.randn(rows, vocab, generator=gen) * 2 + ramp.flip(0) * 0.5 + ramp * 0.5
    t[0, 1 : vocab : 7] = -math.inf
    return s, t


def _mask(rows: int) -> torch.Tensor:
    return torch.tensor([i % 3 != 1 for i in range(rows)])


@pytest.mark.falsifies("FT-KERNELS-001", mutants=["kernel-kd-max-not-rescaled", "kernel-kd-neg-inf-unguarded"])
def test_fused_loss_equals_float64_reference() -> None:
    for rows, vocab, temperature in KD_CASES:
        s, t = _rising_logits(rows, vocab, rows * vocab)
        for mask in (None, _mask(rows)):
            got = kd.kd_loss(s.to(DEVICE), t.to(DEVICE), temperature, None if mask is None else mask.to(DEVICE),
                             kernel="triton").item()
            want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature, None if mask is None else mask.numpy())
            assert math.isclose(got, want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (rows, vocab, temperature, got, want)


@pytest.mark.falsifies("FT-KERNELS-002", mutants=["kernel-kd-mask-ignored", "kernel-kd-backward-wrong-temperature"])
def test_fused_gradient_equals_closed_form_and_respects_the_mask() -> None:
    for rows, vocab, temperature in KD_CASES:
        s, t = _rising_logits(rows, vocab, rows + vocab)
        mask = _mask(rows)
        runs = []
        for noise in (0.0, 30.0):  # rewrite the masked rows of both inputs
            s_run, t_run = s.clone(), t.clone()
            s_run[~mask] += noise
            t_run[~mask] -= noise
            student = s_run.to(DEVICE).requires_grad_(True)
            loss = kd.kd_loss(student, t_run.to(DEVICE), temperature, mask.to(DEVICE), kernel="triton")
            loss.backward()
            runs.append((loss.item(), student.grad.cpu()))
        want_loss = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature, mask.numpy())
        want_grad = ref.kd_grad64(ref.as64(s), ref.as64(t), temperature, mask.numpy())
        for loss, grad in runs:
            assert math.isclose(loss, want_loss, rel_tol=LOSS_RTOL, abs_tol=1e-7), (loss, want_loss)
            np.testing.assert_allclose(ref.as64(grad), want_grad, rtol=0, atol=GRAD_ATOL)
            assert torch.count_nonzero(grad[~mask]) == 0


_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def _random_bit_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Blocks of random bytes with finite random fp16 scales (every other bit pattern random)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n_blocks, quant.block_bytes(qtype)), dtype=np.uint8)
    for offset in quant.SCALE_FIELDS[qtype].values():
        scales = (rng.uniform(-1.0, 1.0, size=n_blocks) * 2.0 ** -rng.integers(0, 10, size=n_blocks)).astype(np.float16)
        blocks[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def _assert_bit_exact(qtype: str, seed: int) -> None:
    blocks = _random_bit_blocks(qtype, 6, seed)
    expected = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[qtype]).reshape(-1)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = quant.dequantize(torch.from_numpy(blocks).to(DEVICE), qtype, kernel="triton", dtype=dtype)
        want = torch.from_numpy(np.ascontiguousarray(expected)).to(dtype)  # torch rounds to nearest even
        assert torch.equal(got.cpu().reshape(-1).view(_BITS[dtype]), want.view(_BITS[dtype])), (qtype, dtype)


@pytest.mark.falsifies("FT-KERNELS-003", mutants=[
    "kernel-q4k-nibble-order-swapped", "kernel-q4k-scale-high-bits-dropped", "kernel-q6k-high-bits-dropped",
    "kernel-bf16-truncated"])
def test_k_quant_kernels_are_bit_exact_with_gguf() -> None:
    for seed, qtype in enumerate(("Q4_K", "Q6_K")):
        _assert_bit_exact(qtype, seed)


@pytest.mark.falsifies("FT-KERNELS-004", mutants=["kernel-q5-0-fifth-bit-dropped", "kernel-q8-0-unsigned"])
def test_legacy_quant_kernels_are_bit_exact_with_gguf() -> None:
    for seed, qtype in enumerate(("Q5_0", "Q8_0")):
        _assert_bit_exact(qtype, seed + 10)

"""Falsifiers of distill-kernels-v1: the Triton kernels against independent references.

The kernels run compiled on a CUDA device, else in Triton's interpreter on CPU
tensors (``distill.kernels.runtime``). The references are float64 numpy
(``ft_reference``) and gguf's dequantizer, never the code under test.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import gguf
import numpy as np
import pytest
import torch

import ft_reference as ref
from ft_guard import guarded, in_child, require_guard_pages
from distill import kd, quant
from distill.errors import KernelUnavailableError
from distill.kernels import runtime

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
#: (rows, vocab, temperature): odd vocabularies of one and of several kernel blocks (4096 wide), T != 1
KD_CASES = [(4, 97, 2.5), (3, 5001, 0.7), (2, 9000, 4.0)]
LOSS_RTOL, GRAD_ATOL = 1e-4, 1e-5
#: what these falsifiers check (``pv mutate`` runs them against mutants of it): the kernels, where they
#: run, and the entry points that launch them
KD_KERNELS = ["distill.kernels.kd_loss", "distill.kernels.runtime", "distill.kd:kd_loss"]
DEQUANT_KERNELS = ["distill.kernels.dequant", "distill.kernels.runtime", "distill.quant:dequantize",
                   "distill.quant:_output", "distill.quant:_as_blocks"]


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


@pytest.mark.falsifies("FT-KERNELS-001", covers=KD_KERNELS, mutants=["kernel-kd-max-not-rescaled", "kernel-kd-neg-inf-unguarded"])
def test_fused_loss_equals_float64_reference() -> None:
    for rows, vocab, temperature in KD_CASES:
        s, t = _rising_logits(rows, vocab, rows * vocab)
        for mask in (None, _mask(rows)):
            got = kd.kd_loss(s.to(DEVICE), t.to(DEVICE), temperature, None if mask is None else mask.to(DEVICE),
                             kernel="triton").item()
            want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature, None if mask is None else mask.numpy())
            assert math.isclose(got, want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (rows, vocab, temperature, got, want)


@pytest.mark.falsifies("FT-KERNELS-002", covers=KD_KERNELS, mutants=["kernel-kd-mask-ignored", "kernel-kd-backward-wrong-temperature"])
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
    """9 blocks (two programs of 8, the second mostly masked) read from the start of a longer buffer of
    random bytes and written into the start of a longer output: nothing outside either is touched."""
    n, elems = 9, quant.block_elems(qtype)
    blocks = _random_bit_blocks(qtype, n + 8, seed)
    expected = gguf.quants.dequantize(blocks[:n], gguf.GGMLQuantizationType[qtype]).reshape(-1)
    raw = torch.from_numpy(blocks).to(DEVICE).reshape(-1)[: n * quant.block_bytes(qtype)]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        buffer = torch.full(((n + 8) * elems,), 7.0, dtype=dtype, device=DEVICE)
        got = quant.dequantize(raw, qtype, kernel="triton", dtype=dtype, out=buffer[: n * elems])
        want = torch.from_numpy(np.ascontiguousarray(expected)).to(dtype)  # torch rounds to nearest even
        assert torch.equal(got.cpu().reshape(-1).view(_BITS[dtype]), want.view(_BITS[dtype])), (qtype, dtype)
        assert bool((buffer[n * elems :] == 7.0).all()), (qtype, dtype, "written past the output")


@pytest.mark.falsifies("FT-KERNELS-003", covers=DEQUANT_KERNELS, mutants=[
    "kernel-q4k-nibble-order-swapped", "kernel-q4k-scale-high-bits-dropped", "kernel-q6k-high-bits-dropped",
    "kernel-bf16-truncated"])
def test_k_quant_kernels_are_bit_exact_with_gguf() -> None:
    for seed, qtype in enumerate(("Q4_K", "Q6_K")):
        _assert_bit_exact(qtype, seed)


@pytest.mark.falsifies("FT-KERNELS-004", covers=DEQUANT_KERNELS, mutants=["kernel-q5-0-fifth-bit-dropped", "kernel-q8-0-unsigned"])
def test_legacy_quant_kernels_are_bit_exact_with_gguf() -> None:
    for seed, qtype in enumerate(("Q5_0", "Q8_0")):
        _assert_bit_exact(qtype, seed + 10)


@pytest.mark.falsifies("FT-KERNELS-001", covers=KD_KERNELS, mutants=["kernel-kd-max-not-rescaled"])
def test_fused_kernels_on_small_blocks_and_strided_logits() -> None:
    """Blocks of 16 over 45 entries (a tail of 13); a student with stride 2 along the vocabulary, a teacher
    with padded rows, [2, 3, vocab] positions, and a row whose first block is -inf in both."""
    kernels = runtime.load("kd_loss")
    gen = torch.Generator().manual_seed(11)
    student_base = (torch.randn(2, 3, 90, generator=gen) * 3).requires_grad_(True)
    teacher_base = torch.randn(2, 3, 50, generator=gen) * 3
    teacher_base[0, 1, :16] = -math.inf
    t = teacher_base[..., :45]
    first_block = torch.zeros(2, 3, 45, dtype=torch.bool)
    first_block[0, 1, :16] = True
    first_block_base = torch.zeros(2, 3, 90, dtype=torch.bool)
    first_block_base[0, 1, :32:2] = True  # the same entries of the student, in its base tensor
    s_ref = np.where(first_block.numpy(), -math.inf, ref.as64(student_base[..., ::2]))
    mask = torch.tensor([[True, True, False], [True, False, True]])
    for temperature, m in ((0.7, None), (2.0, mask)):
        student_base.grad = None
        s = student_base.masked_fill(first_block_base, -math.inf)[..., ::2]
        assert s.stride(-1) == 2  # the kernels get the strided view itself, not a copy
        loss = kernels.kd_loss(s.to(DEVICE), t.to(DEVICE), temperature, None if m is None else m.to(DEVICE), block=16)
        m64 = None if m is None else m.numpy()
        want = ref.kd_loss64(s_ref, ref.as64(t), temperature, m64)
        assert math.isclose(loss.item(), want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (temperature, loss.item(), want)
        loss.backward()
        grad = student_base.grad[..., ::2]
        want_grad = ref.kd_grad64(s_ref, ref.as64(t), temperature, m64)
        want_grad[0, 1, :16] = 0.0  # both softmaxes are 0 there
        np.testing.assert_allclose(ref.as64(grad), want_grad, rtol=0, atol=GRAD_ATOL)
        assert torch.count_nonzero(student_base.grad[..., 1::2]) == 0
    for block in (0, 3, 24):
        with pytest.raises(ValueError, match=f"^block must be a power of two, got {block}$"):
            kernels.kd_loss(t, t, 1.0, block=block)
    one = kernels.kd_loss(torch.from_numpy(s_ref[:1, :1, :3]).float(), t[:1, :1, :3], 1.0, block=1)
    assert math.isclose(one.item(), ref.kd_loss64(s_ref[:1, :1, :3], ref.as64(t)[:1, :1, :3], 1.0), rel_tol=LOSS_RTOL)


@pytest.mark.falsifies("FT-KERNELS-001", covers=KD_KERNELS,
                       mutants=["kernel-kd-column-major-uncopied", "kernel-kd-block-from-wrong-axis"])
def test_fused_loss_does_not_depend_on_the_layout_or_rank_of_the_logits() -> None:
    """Column-major logits (a transposed [vocab, rows] tensor) and one position's [vocab] logits give the
    float64 formula's loss; column-major and [batch, positions, vocab] logits give the very bits of the
    same values as contiguous [rows, vocab]."""
    s, t = _rising_logits(6, 97, 7)
    temperature = 1.5

    def fused(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return kd.kd_loss(student.to(DEVICE), teacher.to(DEVICE), temperature, kernel="triton").cpu()

    rows = fused(s, t)
    column_major = s.t().contiguous().t()
    assert column_major.stride() == (1, 6) and torch.equal(column_major, s)
    want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature)
    got = fused(column_major, t)
    assert math.isclose(got.item(), want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (got.item(), want)
    assert torch.equal(got, rows)
    assert torch.equal(fused(s.reshape(2, 3, 97), t.reshape(2, 3, 97)), rows)
    one = fused(s[2], t[2])
    assert math.isclose(one.item(), ref.kd_loss64(ref.as64(s[2:3]), ref.as64(t[2:3]), temperature),
                        rel_tol=LOSS_RTOL, abs_tol=1e-7)


@pytest.mark.falsifies("FT-KERNELS-005", covers=["distill.kernels.runtime"], mutants=["kernel-auto-triton-off-cuda"])
def test_kernel_choice_follows_the_device_and_the_interpreter_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda, meta = torch.device("cpu"), torch.device("cuda"), torch.device("meta")
    # Imported under the switch as the session set it: Triton fixes a kernel module's mode when it is
    # imported, so one first imported below (switch off) would stay compiled for every later test.
    assert runtime.load("dequant").__name__ == "distill.kernels.dequant"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert runtime.interpreted()
    assert runtime.use_triton("triton", cpu, "t") and runtime.use_triton("triton", cuda, "t")
    assert runtime.use_triton("auto", cuda, "t") and not runtime.use_triton("auto", cpu, "t")
    assert not runtime.use_triton("torch", cuda, "t") and not runtime.use_triton("torch", cpu, "t")
    with pytest.raises(KernelUnavailableError, match=r"^dequantize Q4_K: kernel must be one of auto, torch, triton, got 'Triton'$"):
        runtime.use_triton("Triton", cpu, "dequantize Q4_K")
    with pytest.raises(KernelUnavailableError, match=r"^kd_loss: kernel='triton' runs on CUDA tensors, or on CPU tensors "
                                                     r"with TRITON_INTERPRET=1; got a meta tensor$"):
        runtime.use_triton("triton", meta, "kd_loss")
    with runtime.launching():  # interpreted: numpy's IEEE warnings are silenced
        assert np.geterr()["invalid"] == np.geterr()["over"] == np.geterr()["divide"] == "ignore"
    for value in ("0", None):
        if value is None:
            monkeypatch.delenv("TRITON_INTERPRET")
        else:
            monkeypatch.setenv("TRITON_INTERPRET", value)
        assert not runtime.interpreted()
        with pytest.raises(KernelUnavailableError, match="got a cpu tensor$"):
            runtime.use_triton("triton", cpu, "kd_loss")
        with np.errstate(invalid="raise"), runtime.launching():  # compiled: numpy is left alone
            assert np.geterr()["invalid"] == "raise"
    monkeypatch.setitem(sys.modules, "triton", None)  # as if triton were not installed
    assert not runtime.triton_installed() and not runtime.use_triton("auto", cuda, "t")
    with pytest.raises(KernelUnavailableError, match=r"^kd_loss: kernel='triton' needs the triton package \(pip install triton\)$"):
        runtime.use_triton("triton", cuda, "kd_loss")


def _fresh_runtime() -> None:
    """Run the runtime module's code again, in a module object of its own (the imported one is kept)."""
    spec = importlib.util.find_spec("distill.kernels.runtime")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.falsifies("FT-KERNELS-005", covers=["distill.kernels.runtime"], mutants=["kernel-interpreter-switch-forced"])
def test_interpreter_switch_is_set_only_without_cuda_and_without_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    # (CUDA, TRITON_INTERPRET before, after); last, the module sets the switch when it is imported
    cases = ((False, None, "1"), (True, None, None), (False, "0", "0"), (False, None, "1"))
    for i, (cuda, given, want) in enumerate(cases):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        if given is None:
            monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        else:
            monkeypatch.setenv("TRITON_INTERPRET", given)
        if i < len(cases) - 1:
            runtime.default_to_interpreter()
        else:
            _fresh_runtime()
        assert os.environ.get("TRITON_INTERPRET") == want, (cuda, given)


def _interpreted_with_guard_pages() -> None:
    require_guard_pages()
    if not runtime.interpreted():
        pytest.skip("compiled kernels read device memory: host guard pages cannot catch their reads")


def _loss_and_grad(s: torch.Tensor, t: torch.Tensor, temperature: float,
                   mask: torch.Tensor | None) -> tuple[float, torch.Tensor]:
    student = s.requires_grad_(True)
    loss = kd.kd_loss(student, t, temperature, mask, kernel="triton")
    loss.backward()
    return loss.item(), student.grad


# The runs on ordinary memory are made here, the guarded runs in a child that may fault: so a
# mutant's lines are run (and traced by pv mutate) in the test's own process too.


@pytest.mark.falsifies("FT-KERNELS-006", covers=KD_KERNELS, mutants=["kernel-kd-backward-reads-past-row"])
def test_kd_kernels_read_nothing_past_their_inputs() -> None:
    """Forward and backward on logits and a mask that each end where an unreadable page begins: the
    last row's last entry is the last readable one. Same loss and gradient as on ordinary memory."""
    _interpreted_with_guard_pages()
    cases = []
    for rows, vocab, temperature in KD_CASES[:2]:
        s, t = _rising_logits(rows, vocab, rows * vocab + 1)
        for mask in (None, _mask(rows)):
            cases.append((s, t, temperature, mask, _loss_and_grad(s.clone(), t, temperature, mask)))

    def check() -> None:
        for s, t, temperature, mask, (loss, grad) in cases:
            got_loss, got_grad = _loss_and_grad(guarded(s), guarded(t), temperature,
                                                None if mask is None else guarded(mask))
            assert got_loss == loss and torch.equal(got_grad, grad), (tuple(s.shape), mask is None)

    in_child(check)


@pytest.mark.falsifies("FT-KERNELS-006", covers=DEQUANT_KERNELS, mutants=["kernel-q8-0-reads-past-blocks"])
def test_dequant_kernels_read_nothing_past_their_blocks() -> None:
    """Nine blocks of each type (two programs, the second mostly masked) ending at an unreadable page."""
    _interpreted_with_guard_pages()
    cases = []
    for seed, qtype in enumerate(("Q4_K", "Q6_K", "Q5_0", "Q8_0")):
        raw = torch.from_numpy(_random_bit_blocks(qtype, 9, seed + 20)).reshape(-1)
        cases.append((qtype, raw, quant.dequantize(raw, qtype, kernel="triton", dtype=torch.float32)))

    def check() -> None:
        for qtype, raw, want in cases:
            got = quant.dequantize(guarded(raw), qtype, kernel="triton", dtype=torch.float32)
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), qtype

    in_child(check)

"""The fused Triton KD loss (interpreted on CPU) against a float64 reference and the PyTorch path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill import kd
from distill.errors import DistillError, KernelUnavailableError
from distill.kernels import runtime
from kernel_data import DEVICE, assert_interpreted_without_cuda

#: (rows, vocab, temperature, block): odd vocabularies, several blocks per row (online rescaling), T != 1
CASES = [(3, 1, 1.0, 16), (4, 37, 2.5, 16), (5, 129, 0.7, 32), (2, 200, 1.0, None), (3, 97, 4.0, 8)]
TOLERANCE = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (1e-4, 1e-3), torch.float16: (1e-4, 1e-3)}


def _reference(s: torch.Tensor, t: torch.Tensor, temperature: float, mask: torch.Tensor | None):
    """Loss and gradient in float64 numpy from the formula: T^2/n sum KL(p_t || p_s), T (p_s - p_t)/n."""
    s64, t64 = (x.detach().cpu().double().numpy().reshape(-1, x.shape[-1]) / temperature for x in (s, t))
    valid = np.ones(len(s64), bool) if mask is None else mask.cpu().numpy().reshape(-1)
    log_q = s64 - s64.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    log_p = t64 - t64.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    p, q = np.exp(log_p), np.exp(log_q)
    with np.errstate(invalid="ignore"):
        kl = np.where(p > 0, p * (log_p - log_q), 0.0).sum(1)
    n = valid.sum()
    grad = np.where(valid[:, None], temperature * (q - p) / n, 0.0)
    return temperature**2 * kl[valid].sum() / n, grad.reshape(s.shape)


def _inputs(rows: int, vocab: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    s, t = (torch.randn(rows, vocab, generator=gen) * 3 for _ in range(2))
    t[0, : vocab // 3] = -math.inf  # tokens the teacher rules out (never all of them)
    return s.to(DEVICE, dtype), t.to(DEVICE, dtype)


def _run(s: torch.Tensor, t: torch.Tensor, temperature: float, mask, block):
    student = s.clone().requires_grad_(True)
    loss = runtime.load("kd_loss").kd_loss(student, t, temperature, mask, block=block)
    loss.backward()
    return loss, student.grad


def test_kernels_run_interpreted_without_cuda() -> None:
    assert_interpreted_without_cuda()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("rows, vocab, temperature, block", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_loss_and_gradient_equal_the_formula(rows, vocab, temperature, block, masked, dtype) -> None:
    _check_against_reference(rows, vocab, temperature, block, masked, dtype)


def test_float16_logits() -> None:
    _check_against_reference(4, 37, 2.5, 16, True, torch.float16)


def _check_against_reference(rows, vocab, temperature, block, masked, dtype) -> None:
    s, t = _inputs(rows, vocab, rows * vocab, dtype)
    mask = None
    if masked:
        mask = torch.tensor([i % 2 == 0 for i in range(rows)], device=DEVICE)
    loss, grad = _run(s, t, temperature, mask, block)
    want_loss, want_grad = _reference(s, t, temperature, mask)
    rtol, atol = TOLERANCE[dtype]
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert math.isclose(loss.item(), want_loss, rel_tol=rtol, abs_tol=atol), (loss.item(), want_loss)
    step = float(np.abs(want_grad).max()) or 1.0
    np.testing.assert_allclose(grad.float().cpu().numpy(), want_grad, rtol=0, atol=max(atol, 1e-2 * step if dtype != torch.float32 else 1e-6))
    if mask is not None:
        assert torch.count_nonzero(grad[~mask]) == 0


def test_equals_the_pytorch_path_through_kd_loss() -> None:
    s, t = _inputs(4, 150, 7, torch.float32)
    full_teacher = torch.cat([t, torch.randn(4, 9, device=DEVICE)], dim=-1)
    teacher = full_teacher[:, :150]  # a truncated teacher: rows with a stride wider than the vocabulary
    losses, grads = [], []
    for kernel in ("triton", "torch"):
        student = s.clone().requires_grad_(True)
        loss = kd.kd_loss(student.view(2, 2, 150), teacher.reshape(2, 2, 150), 1.5, kernel=kernel)
        loss.backward()
        losses.append(loss.item())
        grads.append(student.grad)
    assert math.isclose(*losses, rel_tol=1e-6)
    torch.testing.assert_close(*grads, rtol=1e-5, atol=1e-8)


def test_extreme_bf16_logits_stay_finite() -> None:
    s, t = _inputs(3, 40, 3, torch.float32)
    s[:, :5], t[:, :5] = -3.0e38, -3.0e38
    s[0, 7], t[0, 7] = 3.0e38, 3.0e38
    s, t = s.bfloat16(), t.bfloat16()
    for temperature in (0.5, 2.0):
        loss, _ = _run(s, t, temperature, None, 16)
        want, _ = _reference(s, t, temperature, None)
        assert math.isfinite(loss.item()) and math.isclose(loss.item(), want, rel_tol=1e-4, abs_tol=1e-6)


def test_argument_checks_apply_to_the_triton_path() -> None:
    s, t = _inputs(2, 10, 1, torch.float32)
    with pytest.raises(DistillError, match="temperature"):
        kd.kd_loss(s, t, 0.0, kernel="triton")
    with pytest.raises(KernelUnavailableError, match="kernel must be one of"):
        kd.kd_loss(s, t, 1.0, kernel="fused")


def test_triton_outside_the_interpreter_on_cpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.INTERPRET_VAR, "0")
    s, t = torch.zeros(2, 5), torch.zeros(2, 5)
    with pytest.raises(KernelUnavailableError, match="CUDA tensors"):
        kd.kd_loss(s, t, 1.0, kernel="triton")
    assert kd.kd_loss(s, t, 1.0, kernel="auto").item() == 0.0  # auto on CPU: the PyTorch path

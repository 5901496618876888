"""kd_loss against an independent float64 reference of the formula and of its gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.errors import DistillError, VocabAlignmentError
from distill import kd
from distill.kd import kd_loss


def reference(student: np.ndarray, teacher: np.ndarray, temperature: float, mask: np.ndarray | None):
    """Loss and gradient in float64 with explicit exp/log sums (no torch, no softmax helper)."""
    s = student.astype(np.float64).reshape(-1, student.shape[-1]) / temperature
    t = teacher.astype(np.float64).reshape(-1, teacher.shape[-1]) / temperature
    valid = np.ones(s.shape[0], bool) if mask is None else mask.reshape(-1)
    n = int(valid.sum())
    s_max, t_max = s.max(axis=1, keepdims=True), t.max(axis=1, keepdims=True)
    log_z_s = s_max + np.log(np.exp(s - s_max).sum(axis=1, keepdims=True))
    log_z_t = t_max + np.log(np.exp(t - t_max).sum(axis=1, keepdims=True))
    log_q, log_p = s - log_z_s, t - log_z_t
    p, q = np.exp(log_p), np.exp(log_q)
    kl = (p * np.where(p > 0, log_p - log_q, 0.0)).sum(axis=1)  # 0 log 0 = 0
    loss = temperature**2 * kl[valid].sum() / n
    grad = np.where(valid[:, None], temperature * (q - p) / n, 0.0)
    return loss, grad.reshape(student.shape)


def _logits(shape, seed, scale=3.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * scale).to(dtype)


def _loss_and_grad(student, teacher, temperature=1.0, mask=None, **kw):
    student = student.clone().requires_grad_(True)
    loss = kd_loss(student, teacher, temperature, mask, **kw)
    loss.backward()
    return loss, student.grad


def _as_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().numpy()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 4.0])
@pytest.mark.parametrize("chunk_elems", [1, 7 * 33, 1 << 24])  # one row per chunk, uneven chunks, one chunk
def test_float32_matches_reference(temperature, chunk_elems):
    student, teacher = _logits((3, 5, 33), 1), _logits((3, 5, 33), 2)
    loss, grad = _loss_and_grad(student, teacher, temperature, max_chunk_elems=chunk_elems)
    ref_loss, ref_grad = reference(_as_np(student), _as_np(teacher), temperature, None)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(_as_np(grad), ref_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_mask_averages_over_valid_positions_only(temperature):
    student, teacher = _logits((2, 6, 40), 3), _logits((2, 6, 40), 4)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    loss, grad = _loss_and_grad(student, teacher, temperature, mask, max_chunk_elems=80)
    ref_loss, ref_grad = reference(_as_np(student), _as_np(teacher), temperature, mask.numpy())
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(_as_np(grad), ref_grad, rtol=1e-4, atol=1e-7)
    assert torch.all(grad[~mask] == 0)
    # Changing a masked-out position changes nothing.
    student2 = student.clone()
    student2[0, 1] += 100.0
    assert kd_loss(student2, teacher, temperature, mask).item() == loss.item()


def test_bf16_inputs_accumulate_in_float32():
    # 4 x 3000 logits: a bf16 sum over the vocabulary would lose ~3 significant digits.
    student, teacher = _logits((4, 3000), 5, dtype=torch.bfloat16), _logits((4, 3000), 6, dtype=torch.bfloat16)
    loss, grad = _loss_and_grad(student, teacher, 2.0, max_chunk_elems=3000)
    ref_loss, ref_grad = reference(_as_np(student), _as_np(teacher), 2.0, None)
    assert loss.dtype == torch.float32
    assert grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    # The gradient is stored in bf16 (8 bits of mantissa): relative error <= 2^-8.
    np.testing.assert_allclose(_as_np(grad), ref_grad, rtol=2**-8, atol=1e-9)


def test_mixed_dtypes_bf16_teacher_f32_student():
    student, teacher = _logits((3, 64), 7), _logits((3, 64), 8, dtype=torch.bfloat16)
    loss, grad = _loss_and_grad(student, teacher, 1.5)
    ref_loss, ref_grad = reference(_as_np(student), _as_np(teacher), 1.5, None)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(_as_np(grad), ref_grad, rtol=1e-4, atol=1e-7)


def test_identical_distributions_give_zero_loss_and_zero_gradient():
    logits = _logits((4, 100), 9)
    loss, grad = _loss_and_grad(logits, logits.clone(), 3.0)
    assert abs(loss.item()) < 1e-6
    assert grad.abs().max().item() < 1e-7


def test_teacher_zero_probabilities_give_a_finite_loss():
    student, teacher = _logits((2, 10), 10), _logits((2, 10), 11)
    teacher[:, 7:] = float("-inf")  # tokens the teacher rules out
    loss, grad = _loss_and_grad(student, teacher, 1.0)
    ref_loss, ref_grad = reference(_as_np(student), _as_np(teacher), 1.0, None)
    assert np.isfinite(loss.item())
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(_as_np(grad), ref_grad, rtol=1e-4, atol=1e-7)


def test_teacher_receives_no_gradient():
    student = _logits((2, 10), 12).requires_grad_(True)
    teacher = _logits((2, 10), 13).requires_grad_(True)
    kd_loss(student, teacher).backward()
    assert student.grad is not None
    assert teacher.grad is None


def test_backward_scales_with_upstream_gradient():
    student, teacher = _logits((2, 16), 14), _logits((2, 16), 15)
    _, grad = _loss_and_grad(student, teacher, 2.0)
    s = student.clone().requires_grad_(True)
    (kd_loss(s, teacher, 2.0) * 3.0).backward()
    torch.testing.assert_close(s.grad, grad * 3.0)


def test_forward_saves_no_new_logits_sized_tensor():
    """What the forward keeps for backward: its inputs (same storage) and the valid row indices."""
    student, teacher = _logits((4, 8, 500), 16).requires_grad_(True), _logits((4, 8, 500), 17)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, :3] = False
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: saved.append(x) or x, lambda x: x):
        kd_loss(student, teacher, 2.0, mask)
    input_storages = {student.untyped_storage().data_ptr(), teacher.untyped_storage().data_ptr()}
    new_bytes = sum(x.numel() * x.element_size() for x in saved if x.untyped_storage().data_ptr() not in input_storages)
    assert saved, "the loss saved nothing for backward: the hook saw no custom function"
    assert new_bytes <= mask.numel() * (8 + 2 * 4)  # int64 indices and two float32 normalisers per valid row


@pytest.mark.parametrize(
    "rows, vocab, expected_rows",
    [
        (8192, 151936, 110),  # capped: 64 MiB float32 buffers
        (256, 151936, 8),  # about 1/32 of the positions
        (32, 1024, 1024),  # floor of 4 MiB: one chunk for small logits
    ],
)
def test_automatic_chunks_are_bounded(rows, vocab, expected_rows):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert max(1, kd._chunk_elems(rows, vocab, None, cuda) // vocab) == expected_rows
    assert kd._chunk_elems(rows, vocab, None, cpu) == kd.CPU_CHUNK_ELEMS  # cache-sized on CPU
    assert kd._chunk_elems(rows, vocab, 12345, cuda) == kd._chunk_elems(rows, vocab, 12345, cpu) == 12345


def test_logits_on_two_devices_are_refused():
    with pytest.raises(DistillError, match="one device"):
        kd_loss(torch.zeros(2, 5), torch.zeros(2, 5, device="meta"))


def test_vocabulary_mismatch_is_an_alignment_error_naming_both_sizes():
    with pytest.raises(VocabAlignmentError, match=r"151936.*152064"):
        kd_loss(torch.zeros(2, 151936), torch.zeros(2, 152064))


def test_empty_mask_is_an_error_not_nan():
    with pytest.raises(DistillError, match="no position"):
        kd_loss(torch.zeros(2, 3, 5), torch.zeros(2, 3, 5), mask=torch.zeros(2, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"mask": torch.ones(3, dtype=torch.bool)}, "mask shape"),
        ({"mask": torch.ones(2, 3, dtype=torch.int64)}, "bool"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": "2.0"}, "temperature must be a number"),
        ({"temperature": True}, "temperature must be a number"),
        ({"max_chunk_elems": 0}, "max_chunk_elems"),
        ({"max_chunk_elems": 2.5}, "max_chunk_elems"),
        ({"kernel": "fused"}, "kernel must be one of"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(DistillError, match=message):
        kd_loss(torch.zeros(2, 3, 5), torch.zeros(2, 3, 5), **kwargs)


def test_position_shape_mismatch_is_an_error():
    with pytest.raises(DistillError, match="positions"):
        kd_loss(torch.zeros(2, 3, 5), torch.zeros(3, 2, 5))


def test_truncating_before_softmax_differs_from_truncating_after():
    """Teacher with extra rows: truncating logits renormalises; truncating probabilities does not."""
    vocab, extra = 50, 8
    student, teacher = _logits((3, vocab), 18), _logits((3, vocab + extra), 19)
    before = kd_loss(student, teacher[..., :vocab]).item()
    ref_before, _ = reference(_as_np(student), _as_np(teacher[..., :vocab]), 1.0, None)
    assert before == pytest.approx(ref_before, rel=1e-5)

    # After: softmax over the full teacher vocabulary, then drop the extra probabilities.
    t = _as_np(teacher).astype(np.float64)
    p_full = np.exp(t - t.max(1, keepdims=True))
    p_full /= p_full.sum(1, keepdims=True)
    p_after = p_full[:, :vocab]
    assert np.all(p_after.sum(1) < 1 - 1e-3)  # not a distribution any more
    s = _as_np(student).astype(np.float64)
    log_q = s - s.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    after = (p_after * (np.log(p_after) - log_q)).sum(1).mean()
    assert abs(after - before) > 1e-2


@pytest.mark.gpu
def test_cuda_peak_extra_memory_stays_near_one_logits_tensor():
    """Forward + backward on [2048, 151936] bf16 logits: the allocator's peak beyond the inputs
    is the gradient (one logits tensor) plus bounded chunk buffers, at most 1.25x one logits tensor."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    device = torch.device("cuda")
    shape = (2048, 151936)
    gen = torch.Generator(device=device).manual_seed(0)
    student = (torch.randn(shape, device=device, generator=gen) * 3).to(torch.bfloat16).requires_grad_(True)
    teacher = (torch.randn(shape, device=device, generator=gen) * 3).to(torch.bfloat16)
    logits_bytes = student.numel() * student.element_size()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = kd_loss(student, teacher, 2.0)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert torch.isfinite(loss)
    assert extra <= 1.25 * logits_bytes, f"peak extra {extra / 2**30:.2f} GiB vs logits {logits_bytes / 2**30:.2f} GiB"
    # The same on a slice checked against the float64 reference.
    rows = slice(0, 4)
    ref_loss, ref_grad = reference(_as_np(student[rows].cpu()), _as_np(teacher[rows].cpu()), 2.0, None)
    s = student[rows].detach().clone().requires_grad_(True)
    small = kd_loss(s, teacher[rows], 2.0)
    small.backward()
    assert small.item() == pytest.approx(ref_loss, rel=1e-4)
    np.testing.assert_allclose(_as_np(s.grad.cpu()), ref_grad, rtol=2**-7, atol=1e-9)

"""GPU falsifier of distill-kd-loss-v1: extra memory of the KD loss's forward and backward."""

from __future__ import annotations

import math

import pytest
import torch

from distill import kd
from ft_devices import cuda_or_skip, cuda_peak_bytes, reset_cuda_peak


@pytest.mark.gpu
@pytest.mark.falsifies("FT-KD-006", mutants=["kd-unchunked"])
def test_peak_extra_memory_of_forward_and_backward(hw_profile, evidence) -> None:
    device = cuda_or_skip()
    rows = int(hw_profile.threshold("FT-KD-006", "rows"))
    vocab = int(hw_profile.threshold("FT-KD-006", "vocab"))
    ratio_max = hw_profile.threshold("FT-KD-006", "peak_extra_ratio_max")
    generator = torch.Generator(device=device).manual_seed(0)
    student = (torch.randn(rows, vocab, device=device, generator=generator) * 4).to(torch.bfloat16)
    teacher = (torch.randn(rows, vocab, device=device, generator=generator) * 4).to(torch.bfloat16)
    student.requires_grad_(True)
    logits_bytes = student.numel() * student.element_size()

    before = reset_cuda_peak(device)
    loss = kd.kd_loss(student, teacher, 2.0)
    loss.backward()
    extra = cuda_peak_bytes(device) - before

    evidence("logits_shape", f"{rows}x{vocab} bf16")
    evidence("logits_bytes", logits_bytes, "B")
    evidence("peak_extra_bytes", extra, "B")
    evidence("peak_extra_ratio", extra / logits_bytes)
    assert math.isfinite(loss.item())
    assert student.grad is not None and student.grad.shape == student.shape
    assert extra <= ratio_max * logits_bytes, (
        f"forward+backward took {extra / 2**30:.2f} GiB beyond the inputs, "
        f"{extra / logits_bytes:.2f}x one logits tensor (limit {ratio_max}x)")

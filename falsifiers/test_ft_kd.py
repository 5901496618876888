"""Falsifiers of distill-kd-loss-v1 on CPU: value, gradient, mask, widths, numerics, a short run."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from safetensors.torch import load_file

import ft_reference as ref
from distill import kd
from distill.errors import VocabAlignmentError
from ft_runs import pv_distill

#: what these falsifiers check (``pv mutate`` runs them against mutants of it); the short run checks training
COVERS = ["distill.kd"]
TRAINING = ["distill.train"]

#: (leading shape, vocabulary, temperature, seed): T != 1 so that temperature defects show
CASES = [((5,), 37, 2.5, 1), ((2, 3), 50, 0.7, 2), ((4, 2), 129, 4.0, 3), ((3,), 200, 1.0, 4)]
#: None: the default chunking; 64: chunks of a few rows, so the chunked paths run
CHUNKINGS = [None, 64]
LOSS_RTOL = 1e-4  # DKD-EQ-001
GRAD_ATOL = 1e-5  # DKD-EQ-002
ZERO_TOL = 1e-6  # DKD-BND-003


def _logits(lead: tuple[int, ...], vocab: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, vocab, generator=generator) * scale


def _mask(lead: tuple[int, ...], seed: int) -> torch.Tensor:
    """A random mask with at least one valid and one masked position."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(lead, generator=generator) < 0.6
    flat = mask.view(-1)
    flat[0], flat[-1] = True, False
    return mask


def _chunk_kwargs(chunk: int | None) -> dict[str, int]:
    return {} if chunk is None else {"max_chunk_elems": chunk}


def _case_inputs(lead, vocab, seed):
    return _logits(lead, vocab, seed), _logits(lead, vocab, seed + 100)


@pytest.mark.falsifies("FT-KD-001", covers=COVERS, mutants=["kd-no-t-squared", "kd-no-temperature", "kd-reverse-kl"])
@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_loss_equals_float64_reference(chunk: int | None) -> None:
    for lead, vocab, temperature, seed in CASES:
        s, t = _case_inputs(lead, vocab, seed)
        for mask in (None, _mask(lead, seed)):
            got = kd.kd_loss(s, t, temperature, mask, **_chunk_kwargs(chunk)).item()
            want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature, None if mask is None else mask.numpy())
            assert math.isclose(got, want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (lead, vocab, temperature, got, want)


@pytest.mark.falsifies("FT-KD-002", covers=COVERS, mutants=["kd-grad-no-1-over-n", "kd-grad-t-squared"])
@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_gradient_equals_closed_form(chunk: int | None) -> None:
    for lead, vocab, temperature, seed in CASES:
        s, t = _case_inputs(lead, vocab, seed)
        for mask in (None, _mask(lead, seed)):
            student = s.clone().requires_grad_(True)
            kd.kd_loss(student, t, temperature, mask, **_chunk_kwargs(chunk)).backward()
            want = ref.kd_grad64(ref.as64(s), ref.as64(t), temperature, None if mask is None else mask.numpy())
            np.testing.assert_allclose(ref.as64(student.grad), want, rtol=0, atol=GRAD_ATOL)


@pytest.mark.falsifies("FT-KD-003", covers=COVERS, mutants=["kd-mask-ignored", "kd-mask-ignored-in-n"])
@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_masked_positions_excluded(chunk: int | None) -> None:
    for lead, vocab, temperature, seed in CASES:
        s, t = _case_inputs(lead, vocab, seed)
        mask = _mask(lead, seed)
        runs = []
        for noise_seed in (None, seed + 7):
            s_run, t_run = s.clone(), t.clone()
            if noise_seed is not None:  # rewrite every masked position of both inputs
                s_run[~mask] = _logits((int((~mask).sum()),), vocab, noise_seed, scale=20.0)
                t_run[~mask] = _logits((int((~mask).sum()),), vocab, noise_seed + 1, scale=20.0)
            student = s_run.requires_grad_(True)
            loss = kd.kd_loss(student, t_run, temperature, mask, **_chunk_kwargs(chunk))
            loss.backward()
            runs.append((loss.item(), student.grad))
        (loss_a, grad_a), (loss_b, grad_b) = runs
        want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature, mask.numpy())
        assert math.isclose(loss_a, want, rel_tol=LOSS_RTOL, abs_tol=1e-7), (lead, loss_a, want)
        assert math.isclose(loss_b, loss_a, rel_tol=1e-6, abs_tol=1e-9), (lead, loss_a, loss_b)
        torch.testing.assert_close(grad_b[mask], grad_a[mask], rtol=1e-6, atol=1e-9)
        assert torch.count_nonzero(grad_a[~mask]) == 0 and torch.count_nonzero(grad_b[~mask]) == 0


@pytest.mark.falsifies("FT-KD-004", covers=COVERS, mutants=["kd-silent-vocab-slice"])
@pytest.mark.parametrize("widths", [(151936, 152064), (152064, 151936)])
def test_mismatched_widths_refused(widths: tuple[int, int]) -> None:
    student = torch.zeros(2, widths[0], requires_grad=True)
    teacher = torch.zeros(2, widths[1])
    with pytest.raises(VocabAlignmentError) as caught:
        kd.kd_loss(student, teacher, 1.0)
    assert str(widths[0]) in str(caught.value) and str(widths[1]) in str(caught.value), caught.value


BF16_NEAR_MAX = 3.0e38  # bf16 max is about 3.39e38


def _extreme_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """bf16 logits near +-the dtype's range, and tokens the teacher rules out (-inf): p = 0 exactly there."""
    t, s = _logits((6,), 96, seed), _logits((6,), 96, seed + 1)
    generator = torch.Generator().manual_seed(seed + 2)
    far = torch.rand(6, 96, generator=generator) < 0.3
    t[far], s[far] = -BF16_NEAR_MAX, -BF16_NEAR_MAX
    t[:2, 0], s[:2, 0] = BF16_NEAR_MAX, BF16_NEAR_MAX  # two rows dominated by one huge logit
    t[2:, -3:] = -math.inf
    return s.to(torch.bfloat16), t.to(torch.bfloat16)


@pytest.mark.falsifies("FT-KD-005", covers=COVERS, mutants=["kd-bf16-accumulation", "kd-no-zero-p-guard", "kd-unshifted-scaling"])
def test_zero_nonnegative_finite_in_bf16() -> None:
    for seed in range(3):
        s, t = _extreme_pair(10 * seed)
        for temperature in (0.5, 1.0, 2.0):
            got = kd.kd_loss(s, t, temperature).item()
            want = ref.kd_loss64(ref.as64(s), ref.as64(t), temperature)
            assert math.isfinite(got) and math.isclose(got, want, rel_tol=LOSS_RTOL, abs_tol=1e-6), (got, want)
            assert 0.0 <= kd.kd_loss(t, t, temperature).item() <= ZERO_TOL
        for lead, vocab, temperature, case_seed in CASES:
            s32, t32 = _case_inputs(lead, vocab, case_seed + seed)
            for half in (torch.float32, torch.bfloat16):
                assert kd.kd_loss(s32.to(half), t32.to(half), temperature).item() >= -ZERO_TOL
                assert abs(kd.kd_loss(s32.to(half), s32.to(half), temperature).item()) <= ZERO_TOL


@pytest.mark.falsifies("FT-KD-007", covers=TRAINING, mutants=[
    "train-optimizer-step-skipped", "train-nan-check-removed", "train-checkpoint-not-written"])
def test_short_distillation_learns_and_stops_on_divergence(model_file, tmp_path: Path, hw_profile, evidence,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    steps = int(hw_profile.threshold("FT-KD-007", "steps"))
    min_drop = hw_profile.threshold("FT-KD-007", "min_relative_decrease")
    max_seconds = hw_profile.threshold("FT-KD-007", "max_seconds")
    teacher, student = model_file("tiny-teacher"), model_file("tiny-student")

    diverged = pv_distill(capsys, monkeypatch, teacher, student, tmp_path / "nan", "--steps", "5", "--lr", "1e30")
    assert diverged.code == 1, (diverged.code, diverged.stdout, diverged.stderr)
    message = diverged.stderr.lower()
    assert ("nan" in message or "inf" in message) and "step" in message and "traceback" not in message, message
    summary = diverged.summary()
    assert summary["status"] == "failed" and summary["steps_completed"] < 5
    assert not (diverged.out_dir / "student.safetensors").exists()

    started = time.perf_counter()
    run = pv_distill(capsys, monkeypatch, teacher, student, tmp_path / "run", "--steps", str(steps))
    seconds = time.perf_counter() - started
    assert run.code == 0, run.stderr
    losses = [record["loss"] for record in run.step_records()]
    window = max(1, steps // 5)
    first, last = statistics.mean(losses[:window]), statistics.mean(losses[-window:])
    evidence("loss_first_mean", first)
    evidence("loss_last_mean", last)
    evidence("run_seconds", seconds, "s")
    assert len(losses) == steps and all(math.isfinite(loss) for loss in losses)
    assert last <= (1 - min_drop) * first, f"loss {first:.4f} -> {last:.4f} over {steps} steps"
    assert seconds <= max_seconds
    summary = run.summary()
    assert (summary["status"], summary["steps_completed"]) == ("completed", steps)
    checkpoint = run.out_dir / "student.safetensors"
    assert checkpoint.is_file(), f"a completed run left no checkpoint at {checkpoint}"
    trained = load_file(checkpoint)
    assert sum(t.numel() for t in trained.values()) == _element_count(student)
    assert all(bool(torch.isfinite(t).all()) for t in trained.values())


def _element_count(path: Path) -> int:
    """Weights in a GGUF file, counted with gguf's reader (not the code under test)."""
    return sum(int(tensor.n_elements) for tensor in GGUFReader(path).tensors)

"""The checks bound in contracts/ fail on planted defects of distill (their passing runs are `pytest contracts/`)."""

from __future__ import annotations

from pathlib import Path

import torch

import distill.dispatch as dispatch
import distill.kd as kd
import distill.quant as quant
import distill.vocab as vocab
from distill.errors import VocabAlignmentError

from pv.checks.compiling import compile_document, run_check
from pv.contracts.loading import load_document
from pv.checks.verdicts import Status

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB = REPO_ROOT / "contracts" / "distill-teacher-vocab-alignment-v1.yaml"
BACKEND = REPO_ROOT / "contracts" / "distill-teacher-backend-selection-v1.yaml"
KD = REPO_ROOT / "contracts" / "distill-kd-loss-v1.yaml"
FROZEN = REPO_ROOT / "contracts" / "distill-frozen-q4k-teacher-v1.yaml"
REAL_KD_LOSS = kd.kd_loss
REAL_KD_BACKWARD = kd._KDLoss.backward
REAL_FIRST_DIFFERENCE = vocab.first_difference
REAL_SCALES_MINS = quant._q4_k_scales_mins
REAL_DEQUANT_Q4_K = quant._DEQUANT["Q4_K"]
REAL_EFFECTIVE_VOCAB = vocab.effective_vocab
REAL_SELECT = dispatch.select_teacher_backend


def check(path, obligation):
    (compiled,) = [c for c in compile_document(load_document(path)) if c.obligation == obligation]
    return compiled


def test_every_bound_obligation_names_an_implementation_and_compiles():
    compiled = [c for path in (VOCAB, BACKEND) for c in compile_document(load_document(path))]
    checked = {c.obligation: c for c in compiled if c.checked}
    assert set(checked) == {
        "DTVA-INV-001", "DTVA-INV-002", "DTVA-CONS-003", "DTVA-CLS-004",
        "DTBS-INV-001", "DTBS-INV-002", "DTBS-CLS-003", "DTBS-MONO-004", "DTBS-REF-005",
    }
    assert {c.obligation for c in compile_document(load_document(KD)) if c.checked} == {
        "DKD-EQ-001", "DKD-EQ-002", "DKD-BND-003", "DKD-INV-004",
    }
    # The other obligations of this contract need whole models: falsifiers cover them.
    assert {c.obligation for c in compile_document(load_document(FROZEN)) if c.checked} == {"DFQT-EQ-001"}
    assert all(c.spec is not None for c in checked.values()), [c.issues for c in checked.values()]


def test_the_7b_pair_keeping_its_native_width_is_found_by_crosshair(monkeypatch):
    def keeps_native_for_the_7b_pair(native, target):
        return native if (native, target) == (152064, 151936) else REAL_EFFECTIVE_VOCAB(native, target)

    monkeypatch.setattr(vocab, "effective_vocab", keeps_native_for_the_7b_pair)
    verdict = run_check(check(VOCAB, "DTVA-INV-001"), "crosshair")
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"] == {"native": 152064, "target": 151936}


def test_refusing_an_equal_target_is_refuted_over_the_grid(monkeypatch):
    def refuses_equal(native, target):
        if target is not None and target == native:
            raise VocabAlignmentError("equal")
        return REAL_EFFECTIVE_VOCAB(native, target)

    monkeypatch.setattr(vocab, "effective_vocab", refuses_equal)
    verdict = run_check(check(VOCAB, "DTVA-INV-002"))
    assert (verdict.engine, verdict.status) == ("exhaustive", Status.REFUTED), verdict.detail
    assert verdict.counterexample["inputs"] == {"native": 1, "target": 1}


def test_truncating_probabilities_instead_of_logits_is_refuted(monkeypatch):
    def softmax_then_cut(logits, n):
        return torch.softmax(logits, dim=-1)[..., :n]

    monkeypatch.setattr(vocab, "truncate_logits", softmax_then_cut)
    verdict = run_check(check(VOCAB, "DTVA-CONS-003"))
    assert (verdict.engine, verdict.status) == ("hypothesis", Status.REFUTED), verdict.detail


def test_handing_out_the_last_rows_is_refuted(monkeypatch):
    # DTVA-CONS-003 compares the distribution of what is handed out with the full one
    # renormalised over the shared tokens: the right width from the wrong rows fails it.
    monkeypatch.setattr(vocab, "truncate_logits", lambda logits, n: logits[..., logits.shape[-1] - n:])
    verdict = run_check(check(VOCAB, "DTVA-CONS-003"))
    assert (verdict.engine, verdict.status) == ("hypothesis", Status.REFUTED), verdict.detail


def test_an_override_that_loses_on_unified_memory_is_refuted(monkeypatch):
    def auto_wins_on_unified(override, device_class, quantized, dequant_bytes, free_bytes):
        if device_class == "unified" and override == "q4k-native":
            return "dequant"
        return REAL_SELECT(override, device_class, quantized, dequant_bytes, free_bytes)

    monkeypatch.setattr(dispatch, "select_teacher_backend", auto_wins_on_unified)
    for engine in ("hypothesis", "crosshair"):
        verdict = run_check(check(BACKEND, "DTBS-INV-001"), engine)
        assert verdict.status is Status.REFUTED, (engine, verdict.detail)
        assert verdict.counterexample["inputs"]["device_class"] == "unified"


def test_an_unknown_override_falling_back_to_auto_is_refuted(monkeypatch):
    def unknown_means_auto(override, *args):
        return REAL_SELECT("auto" if override == "cuda" else override, *args)

    monkeypatch.setattr(dispatch, "select_teacher_backend", unknown_means_auto)
    verdict = run_check(check(BACKEND, "DTBS-INV-002"))
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"]["override"] == "cuda"


def test_ignoring_the_reserve_is_refuted_at_the_boundary(monkeypatch):
    def without_reserve(override, device_class, quantized, dequant_bytes, free_bytes):
        if override == "auto" and quantized and device_class == "discrete":
            return "dequant" if dequant_bytes <= free_bytes else "q4k-native"
        return REAL_SELECT(override, device_class, quantized, dequant_bytes, free_bytes)

    monkeypatch.setattr(dispatch, "select_teacher_backend", without_reserve)
    verdict = run_check(check(BACKEND, "DTBS-CLS-003"))
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"]["free_offset"] < 0


def test_a_non_monotone_choice_is_refuted(monkeypatch):
    def dequant_only_in_a_window(override, device_class, quantized, dequant_bytes, free_bytes):
        chosen = REAL_SELECT(override, device_class, quantized, dequant_bytes, free_bytes)
        if chosen == "dequant" and quantized and device_class == "discrete" and free_bytes > 64 * 1024**3:
            return "q4k-native"
        return chosen

    monkeypatch.setattr(dispatch, "select_teacher_backend", dequant_only_in_a_window)
    verdict = run_check(check(BACKEND, "DTBS-MONO-004"))
    assert verdict.status is Status.REFUTED, verdict.detail



def test_a_kd_loss_without_the_temperature_squared_is_refuted(monkeypatch):
    def unscaled(student, teacher, temperature=1.0, mask=None):
        return REAL_KD_LOSS(student, teacher, temperature, mask) / temperature**2

    monkeypatch.setattr(kd, "kd_loss", unscaled)
    verdict = run_check(check(KD, "DKD-EQ-001"))
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"]["T"] != 1.0


def test_a_kd_loss_of_the_wrong_direction_is_refuted(monkeypatch):
    def reverse_kl(student, teacher, temperature=1.0, mask=None):
        return REAL_KD_LOSS(teacher, student, temperature, mask)

    monkeypatch.setattr(kd, "kd_loss", reverse_kl)
    assert run_check(check(KD, "DKD-EQ-001")).status is Status.REFUTED


def test_a_backward_scaled_by_t_squared_is_refuted(monkeypatch):
    def one_factor_of_t_too_many(ctx, grad_out):
        grad, *rest = REAL_KD_BACKWARD(ctx, grad_out)
        return (grad * ctx.temperature, *rest)

    monkeypatch.setattr(kd._KDLoss, "backward", staticmethod(one_factor_of_t_too_many))
    verdict = run_check(check(KD, "DKD-EQ-002"))
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"]["T"] != 1.0


def test_a_loss_averaged_over_every_position_is_refuted(monkeypatch):
    def mean_over_all_positions(student, teacher, temperature=1.0, mask=None, **options):
        loss = REAL_KD_LOSS(student, teacher, temperature, mask, **options)
        return loss if mask is None else loss * mask.sum() / mask.numel()

    monkeypatch.setattr(kd, "kd_loss", mean_over_all_positions)
    for obligation in ("DKD-EQ-002", "DKD-INV-004"):
        verdict = run_check(check(KD, obligation))
        assert verdict.status is Status.REFUTED, (obligation, verdict.detail)


def test_a_loss_that_ignores_the_mask_is_refuted(monkeypatch):
    def ignores_mask(student, teacher, temperature=1.0, mask=None, **options):
        return REAL_KD_LOSS(student, teacher, temperature, None, **options)

    monkeypatch.setattr(kd, "kd_loss", ignores_mask)
    verdict = run_check(check(KD, "DKD-INV-004"))
    assert verdict.status is Status.REFUTED, verdict.detail


def test_comparing_sizes_instead_of_tokens_is_refuted_over_the_grid(monkeypatch):
    def sizes_only(teacher, student):
        return None if len(student) <= len(teacher) else len(teacher)

    monkeypatch.setattr(vocab, "first_difference", sizes_only)
    verdict = run_check(check(VOCAB, "DTVA-CLS-004"))
    assert (verdict.engine, verdict.status) == ("exhaustive", Status.REFUTED), verdict.detail
    inputs = verdict.counterexample["inputs"]
    assert len(inputs["student"]) <= len(inputs["teacher"]) and inputs["student"] != inputs["teacher"][: len(inputs["student"])]


def test_reporting_the_wrong_first_index_is_refuted(monkeypatch):
    def one_late(teacher, student):
        first = REAL_FIRST_DIFFERENCE(teacher, student)
        return None if first is None else first + 1

    monkeypatch.setattr(vocab, "first_difference", one_late)
    assert run_check(check(VOCAB, "DTVA-CLS-004")).status is Status.REFUTED


def test_q4_k_mins_without_their_high_bits_are_refuted(monkeypatch):
    def low_bits_only(packed):
        scales, mins = REAL_SCALES_MINS(packed)
        return scales, mins % 16

    monkeypatch.setattr(quant, "_q4_k_scales_mins", low_bits_only)
    verdict = run_check(check(FROZEN, "DFQT-EQ-001"))
    assert (verdict.engine, verdict.status) == ("hypothesis", Status.REFUTED), verdict.detail


def test_q4_k_weights_one_ulp_off_are_refuted(monkeypatch):
    def one_ulp_up(blocks, out):
        REAL_DEQUANT_Q4_K(blocks, out)
        out.copy_(torch.where(out == 0, out, torch.nextafter(out, torch.full_like(out, torch.inf))))

    monkeypatch.setitem(quant._DEQUANT, "Q4_K", one_ulp_up)
    verdict = run_check(check(FROZEN, "DFQT-EQ-001"))
    assert verdict.status is Status.REFUTED, verdict.detail


def test_the_upstream_unified_rule_is_refuted(monkeypatch):
    def unified_means_dequant(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes=None):
        if override == "auto" and device_class == "unified":
            return "dequant"
        return REAL_SELECT(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes)

    monkeypatch.setattr(dispatch, "select_teacher_backend", unified_means_dequant)
    for obligation in ("DTBS-CLS-003", "DTBS-REF-005"):
        verdict = run_check(check(BACKEND, obligation))
        assert verdict.status is Status.REFUTED, (obligation, verdict.detail)
        assert verdict.counterexample["inputs"]["device_class"] == "unified"


def test_a_backend_that_does_not_fit_instead_of_a_refusal_is_refuted(monkeypatch):
    def never_refuses(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes=None):
        return REAL_SELECT(override, device_class, quantized, dequant_bytes, free_bytes, None if quantized else native_bytes) \
            if quantized else "dequant"

    monkeypatch.setattr(dispatch, "select_teacher_backend", never_refuses)
    assert run_check(check(BACKEND, "DTBS-REF-005")).status is Status.REFUTED
    assert run_check(check(BACKEND, "DTBS-CLS-003")).status is Status.REFUTED

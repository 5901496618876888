"""Exhaustive engine: a proof with the count over finite domains, and refutation of planted defects."""

from __future__ import annotations

import dataclasses

from compiler_data.pvc_units import ALLOW, compiled, units

from pv.checks.compiling import compile_unit, run_check
from pv.checks.verdicts import Status


def topk(values, k):
    """Independent top-k for judging counterexamples: indices by value descending, ties by index."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]


def test_reference_is_proved_with_the_count_of_every_combination():
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-EXH-003"), allow=ALLOW)
    assert verdict.engine == "exhaustive"
    assert verdict.status is Status.PROVED, verdict.detail
    assert verdict.budget["combinations"] == 13 * 14  # native in [0, 12]; target None or [0, 12]
    assert verdict.examples == 13 * 14


def test_choices_and_bools_are_proved_exhaustively():
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-SEL-005"), allow=ALLOW)
    assert (verdict.engine, verdict.status) == ("exhaustive", Status.PROVED), verdict.detail
    assert verdict.budget["combinations"] == 7 * 2 * 2 * 2 * 3


def test_planted_off_by_one_is_refuted_at_the_first_failing_combination():
    check = compiled("pvc-checks-v1.yaml", "PVC-EXH-003", effective_vocab="effective_vocab_strict_less")
    verdict = run_check(check, allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"] == {"native": 1, "target": 1}
    assert "outside the error region" in verdict.counterexample["failure"]
    assert verdict.replay == '{"native": 1, "target": 1}'


def test_false_top_k_property_is_refuted_with_a_minimal_counterexample():
    verdict = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-002"), allow=ALLOW)
    assert (verdict.engine, verdict.status) == ("exhaustive", Status.REFUTED), verdict.detail
    inputs = verdict.counterexample["inputs"]
    l, n, k = inputs["l"], inputs["N"], inputs["K"]
    assert set(topk(l[:n], k)) != {i for i in topk(l, k) if i < n}  # really a counterexample
    assert len(l) == 2 and k == 1  # no shorter list or smaller K can fail


def test_unsatisfiable_assume_is_vacuous_not_proved():
    verdict = run_check(compiled("pvc-vacuous-v1.yaml", "PVC-VAC-002"), allow=ALLOW)
    assert verdict.status is Status.VACUOUS, verdict.detail
    assert verdict.examples == 0


def test_spent_time_budget_is_not_confirmed_never_proved():
    unit = units("pvc-checks-v1.yaml")["PVC-EXH-003"]
    check = {**unit.check, "budget": {"seconds": 1e-9}}
    verdict = run_check(compile_unit(dataclasses.replace(unit, check=check)), allow=ALLOW)
    assert verdict.status is Status.NOT_CONFIRMED, verdict.detail
    assert "time budget" in verdict.detail


def test_replay_of_a_counterexample_judges_that_input_again():
    check = compiled("pvc-checks-v1.yaml", "PVC-EXH-003", effective_vocab="effective_vocab_strict_less")
    verdict = run_check(check, allow=ALLOW, replay={"native": 1, "target": 1})
    assert (verdict.engine, verdict.status) == ("replay", Status.REFUTED)
    reference = compiled("pvc-checks-v1.yaml", "PVC-EXH-003")
    assert run_check(reference, allow=ALLOW, replay={"native": 1, "target": 1}).status is Status.PASSED

"""Hypothesis engine: deterministic profile, shrunk counterexamples with a replay handle, vacuity."""

from __future__ import annotations

from compiler_data.pvc_units import ALLOW, compiled

from pv.checks.compiling import run_check
from pv.checks.engines.hypothesis_engine import seed_of
from pv.checks.verdicts import Status


def topk(values, k):
    """Independent top-k for judging counterexamples: indices by value descending, ties by index."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]


def test_false_top_k_property_is_refuted_and_shrunk():
    verdict = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001"), allow=ALLOW)
    assert (verdict.engine, verdict.status) == ("hypothesis", Status.REFUTED), verdict.detail
    inputs = verdict.counterexample["inputs"]
    l, n, k = inputs["l"], inputs["N"], inputs["K"]
    assert set(topk(l[:n], k)) != {i for i in topk(l, k) if i < n}  # really a counterexample
    assert len(l) <= 4 and n <= 3 and k <= 2  # at least as small as l=[5,4,3,10], N=3, K=2
    assert verdict.replay.startswith("@reproduce_failure(")


def test_profile_is_deterministic():
    first = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001"), allow=ALLOW)
    second = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001"), allow=ALLOW)
    assert first.counterexample == second.counterexample
    assert first.budget["seed"] == seed_of(f"{first.contract}::{first.obligation}") and first.budget["database"] is None


def test_reference_passes_with_the_number_of_examples():
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-INV-002"), "hypothesis", allow=ALLOW)
    assert verdict.status is Status.PASSED, verdict.detail
    assert verdict.examples == 200


def test_planted_off_by_one_is_refuted():
    check = compiled("pvc-checks-v1.yaml", "PVC-INV-001", effective_vocab="effective_vocab_strict_less")
    verdict = run_check(check, "hypothesis", allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    inputs = verdict.counterexample["inputs"]
    assert inputs["target"] == inputs["native"]  # the one place the mutant differs


def test_tensor_reference_passes_and_softmax_before_truncation_is_refuted():
    reference = run_check(compiled("pvc-checks-v1.yaml", "PVC-CONS-006"), allow=ALLOW)
    assert (reference.engine, reference.status) == ("hypothesis", Status.PASSED), reference.detail
    mutant = compiled("pvc-checks-v1.yaml", "PVC-CONS-006", teacher_distribution="teacher_distribution_after_softmax")
    verdict = run_check(mutant, allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    logits = verdict.counterexample["inputs"]["logits"]["tensor"]
    assert verdict.counterexample["inputs"]["n"] < logits["shape"][1]  # only a real cut loses mass


def test_unsatisfiable_assume_is_vacuous():
    verdict = run_check(compiled("pvc-vacuous-v1.yaml", "PVC-VAC-001"), "hypothesis", allow=ALLOW)
    assert verdict.status is Status.VACUOUS, verdict.detail


def test_replay_of_the_shrunk_counterexample_fails_again():
    check = compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001")
    verdict = run_check(check, allow=ALLOW)
    replayed = run_check(check, allow=ALLOW, replay=verdict.counterexample["inputs"])
    assert replayed.status is Status.REFUTED
    from_the_issue = run_check(check, allow=ALLOW, replay={"l": [5, 4, 3, 10], "N": 3, "K": 2})
    assert from_the_issue.status is Status.REFUTED
    holds_here = run_check(check, allow=ALLOW, replay={"l": [10, 9, 3, 5], "N": 3, "K": 2})
    assert holds_here.status is Status.PASSED


class _FailureWatch:
    """Counts evaluations, and those after the first failing one; its clock jumps a day ahead
    once a failure was seen (a machine too loaded to finish shrinking), without real waiting."""

    def __init__(self, monkeypatch) -> None:
        import time

        from pv.checks import evaluation
        from pv.checks.engines import hypothesis_engine

        self.evaluations, self.after_failure, self.failed, self._real = 0, 0, False, time.monotonic
        evaluate = evaluation.Property.evaluate

        def watched(prop, inputs):
            self.evaluations += 1
            self.after_failure += self.failed
            outcome = evaluate(prop, inputs)
            self.failed = self.failed or outcome.status != evaluation.PASS
            return outcome

        monkeypatch.setattr(evaluation.Property, "evaluate", watched)
        self.engine = hypothesis_engine

    def jump_after_failure(self, monkeypatch) -> None:
        clock = type("Clock", (), {"monotonic": staticmethod(lambda: self._real() + 86400 * self.failed)})
        monkeypatch.setattr(self.engine, "time", clock)


def test_a_failure_found_is_reported_when_the_time_budget_ends_the_shrinking(monkeypatch):
    watch = _FailureWatch(monkeypatch)
    watch.jump_after_failure(monkeypatch)
    verdict = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001"), allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    assert "time budget ran out while shrinking" in verdict.detail and watch.after_failure == 0
    inputs = verdict.counterexample["inputs"]
    l, n, k = inputs["l"], inputs["N"], inputs["K"]
    assert set(topk(l[:n], k)) != {i for i in topk(l, k) if i < n}


def test_shrinking_stops_after_a_count_of_tries_with_the_smallest_failure(monkeypatch):
    watch = _FailureWatch(monkeypatch)
    monkeypatch.setattr(watch.engine, "SHRINK_TRIES", 20)
    verdict = run_check(compiled("pvc-topk-false-v1.yaml", "PVC-TOPK-001"), allow=ALLOW)
    assert verdict.status is Status.REFUTED and "shrinking stopped after 20 tries" in verdict.detail, verdict.detail
    assert watch.after_failure == 20
    inputs = verdict.counterexample["inputs"]
    l, n, k = inputs["l"], inputs["N"], inputs["K"]
    assert set(topk(l[:n], k)) != {i for i in topk(l, k) if i < n}


def test_without_budget_seconds_the_examples_decide_however_slow_the_machine(monkeypatch):
    watch = _FailureWatch(monkeypatch)
    slow = type("Clock", (), {"monotonic": staticmethod(lambda: watch._real() + 10 * watch.evaluations)})
    monkeypatch.setattr(watch.engine, "time", slow)  # each example seems to take 10 s: 200 take 33 minutes
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-INV-002"), "hypothesis", allow=ALLOW)
    assert verdict.status is Status.PASSED and verdict.examples == 200, verdict.detail

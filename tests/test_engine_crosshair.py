"""CrossHair engine: proofs over all paths, planted defects found within the stated budget, honesty."""

from __future__ import annotations

import dataclasses

from compiler_data.pvc_targets import RESERVE_BYTES
from compiler_data.pvc_units import ALLOW, compiled, units

from pv.checks.compiling import compile_unit, run_check
from pv.checks.engines import crosshair_engine
from pv.checks.verdicts import Status


def test_reference_is_proved_over_all_paths_with_the_budget_reported():
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-INV-001"), "crosshair", allow=ALLOW)
    assert verdict.status is Status.PROVED, verdict.detail
    assert verdict.budget["per_condition_seconds"] > 0 and verdict.budget["paths"] > 0
    assert verdict.budget["max_iterations"] == crosshair_engine.DEFAULT_ITERATIONS


def test_magic_value_defect_is_found():
    check = compiled("pvc-checks-v1.yaml", "PVC-INV-001", effective_vocab="effective_vocab_magic")
    verdict = run_check(check, "crosshair", allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    assert verdict.counterexample["inputs"] == {"native": 152064, "target": 151936}
    assert verdict.counterexample["result"] == 152064


def test_exact_fit_boundary_defect_is_found():
    reference = run_check(compiled("pvc-checks-v1.yaml", "PVC-SEL-004"), "crosshair", allow=ALLOW)
    assert reference.status is Status.PROVED, reference.detail
    check = compiled("pvc-checks-v1.yaml", "PVC-SEL-004", select_backend="select_backend_strict_fit")
    verdict = run_check(check, "crosshair", allow=ALLOW)
    assert verdict.status is Status.REFUTED, verdict.detail
    inputs = verdict.counterexample["inputs"]
    assert inputs["dequant_bytes"] == inputs["free_bytes"] - RESERVE_BYTES  # exactly the boundary
    assert inputs["quantized"] is True and inputs["device_class"] == "discrete"


def test_unsatisfiable_assume_is_vacuous():
    verdict = run_check(compiled("pvc-vacuous-v1.yaml", "PVC-VAC-001"), "crosshair", allow=ALLOW)
    assert verdict.status is Status.VACUOUS, verdict.detail


def test_budget_spent_before_all_paths_is_not_confirmed():
    # A count of paths, not seconds (which a fast machine could finish in): all paths take 30 s
    # (562 in 30 s measured), 20 take about 1 s of the default 10 s per condition.
    unit = units("pvc-checks-v1.yaml")["PVC-INV-002"]  # error messages format the inputs: many paths
    check = {**unit.check, "budget": {"examples": 20}}
    verdict = run_check(compile_unit(dataclasses.replace(unit, check=check)), "crosshair", allow=ALLOW)
    assert verdict.status is Status.NOT_CONFIRMED, verdict.detail
    assert verdict.budget["max_iterations"] == 20 and verdict.budget["paths"] == 20


def test_spent_total_budget_stops_further_checks():
    crosshair_engine.set_total_budget(0.0)
    try:
        verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-INV-001"), "crosshair", allow=ALLOW)
    finally:
        crosshair_engine.set_total_budget(crosshair_engine.DEFAULT_TOTAL_SECONDS)
    assert verdict.status is Status.NOT_CONFIRMED
    assert "total" in verdict.detail


def test_tensor_inputs_are_not_applicable():
    verdict = run_check(compiled("pvc-checks-v1.yaml", "PVC-CONS-006"), "crosshair", allow=ALLOW)
    assert verdict.status is Status.NOT_APPLICABLE
    assert "tensors" in verdict.detail

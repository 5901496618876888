"""How one input is judged: error regions, exceptions, NaN policies, bindings (shown through exhaustive runs)."""

from __future__ import annotations

import math

import pytest
from compiler_data.pvc_units import ALLOW, inline

from pv.checks.compiling import run_check
from pv.checks.verdicts import Status

SIZES = {"native": {"int": {"min": 0, "max": 6}}, "target": {"optional": {"of": {"int": {"min": 0, "max": 6}}}}}


def vocab_check(**overrides) -> dict:
    check = {
        "given": SIZES, "call": "effective_vocab", "result": "effective_vocab(native, target)",
        "raises": {"error": "compiler_data.pvc_targets:SizeError",
                   "when": "native < 1 or (target is not None and (target < 1 or target > native))"},
        "expect": "result == (native if target is None else target)",
    }
    return {**check, **overrides}


def run(check: dict, **functions: str):
    return run_check(inline(check, **({"effective_vocab": "effective_vocab"} | functions)), allow=ALLOW)


def test_the_reference_satisfies_the_region_and_the_values():
    assert run(vocab_check()).status is Status.PROVED


def test_returning_inside_the_error_region_is_refuted():
    region = {"error": "compiler_data.pvc_targets:SizeError", "when": "native < 1 or target is not None"}
    verdict = run(vocab_check(raises=region))
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample["inputs"] == {"native": 1, "target": 1}
    assert "where compiler_data.pvc_targets:SizeError was required" in verdict.counterexample["failure"]


def test_an_exception_the_contract_does_not_declare_is_refuted():
    without_region = {key: value for key, value in vocab_check().items() if key != "raises"}
    verdict = run(without_region)
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample["failure"].startswith("raised SizeError")


def test_an_expression_that_raises_is_an_error_of_the_check_not_a_refutation():
    verdict = run(vocab_check(expect="len(result) > 0"))
    assert verdict.status is Status.ERROR
    assert "evaluating expect raised TypeError" in verdict.detail
    verdict = run(vocab_check(let={"ratio": "native / (native - native)"}))
    assert verdict.status is Status.ERROR and "let ratio" in verdict.detail


def test_derived_inputs_appear_in_the_counterexample():
    verdict = run(vocab_check(let={"twice": "2 * native"}), effective_vocab="effective_vocab_strict_less")
    assert verdict.status is Status.REFUTED
    assert verdict.counterexample["derived"] == {"twice": 2 * verdict.counterexample["inputs"]["native"]}


SCALED = {
    "given": {"x": {"choice": {"values": [1.0, math.inf]}}, "factor": {"choice": {"values": [1.0, 0.0]}}},
    "call": "scaled", "result": "scaled(x, factor)", "expect": "isclose(result, x * factor)",
    "tolerance": {"abs": 1e-12},
}


@pytest.mark.parametrize("policy, status", [("forbid", Status.REFUTED), ("ieee", Status.REFUTED), ("equal", Status.PROVED)])
def test_nan_policy_is_the_contracts_choice(policy, status):
    verdict = run_check(inline({**SCALED, "nan_policy": policy}, scaled="scaled"), allow=ALLOW)
    assert verdict.status is status, verdict.detail
    if status is Status.REFUTED:  # inf * 1 is fine under every policy except forbid; inf * 0 is NaN
        expected = {"x": {"float": "inf"}, "factor": 1.0 if policy == "forbid" else 0.0}
        assert verdict.counterexample["inputs"] == expected


def test_forbid_names_the_non_finite_result():
    verdict = run_check(inline(SCALED, scaled="scaled"), allow=ALLOW)
    assert "NaN or Inf" in verdict.counterexample["failure"]


@pytest.mark.parametrize("binding", ["os:system", "subprocess:run", "builtins:eval"])
def test_bindings_outside_the_allowed_modules_are_refused_before_import(binding, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = {"given": {"cmd": {"choice": {"values": ["touch PV_INJECTION_MARKER"]}}},
             "call": "shell", "result": "shell(cmd)", "expect": "True"}
    compiled = inline(check)
    compiled.unit.implementations["shell"] = binding
    from pv.checks.compiling import compile_unit

    verdict = run_check(compile_unit(compiled.unit), allow=ALLOW)
    assert verdict.status is Status.ERROR
    assert "outside the allowed modules" in verdict.detail
    assert not (tmp_path / "PV_INJECTION_MARKER").exists()


def test_a_missing_implementation_is_an_error_naming_it():
    verdict = run(vocab_check(), effective_vocab="no_such_function")
    assert verdict.status is Status.ERROR
    assert "no_such_function" in verdict.detail

"""Helpers of the expression language: closeness under the declared tolerance and NaN policy, references."""

from __future__ import annotations

import math

import pytest

from pv.contracts.expr_helpers import (
    HelperError, Tolerance, allclose, grad, has_non_finite, isclose, kl, log_softmax, requires_grad, softmax,
    tensor, topk_indices, where,
)


def test_isclose_uses_absolute_then_relative_tolerance():
    assert isclose(1.0, 1.0 + 1e-6, tolerance=Tolerance(abs=1e-6), nan_policy="forbid")
    assert not isclose(1.0, 1.0 + 3e-6, tolerance=Tolerance(abs=1e-6), nan_policy="forbid")
    assert isclose(1000.0, 1001.0, tolerance=Tolerance(rel=1e-3), nan_policy="forbid")
    assert not isclose(1000.0, 1002.0, tolerance=Tolerance(rel=1e-3), nan_policy="forbid")


def test_isclose_within_units_in_the_last_place():
    one_ulp_up = math.nextafter(1.0, 2.0)
    two_ulp_up = math.nextafter(one_ulp_up, 2.0)
    assert isclose(1.0, one_ulp_up, tolerance=Tolerance(ulp=1), nan_policy="forbid")
    assert not isclose(1.0, two_ulp_up, tolerance=Tolerance(ulp=1), nan_policy="forbid")


def test_ulp_of_float32_tensors_is_the_float32_spacing():
    torch = pytest.importorskip("torch")
    a = torch.tensor([1.0, 1000.0], dtype=torch.float32)
    one_ulp = torch.nextafter(a, torch.full_like(a, math.inf))
    two_ulp = torch.nextafter(one_ulp, torch.full_like(a, math.inf))
    assert allclose(a, one_ulp, tolerance=Tolerance(ulp=1), nan_policy="forbid")
    assert not allclose(a, two_ulp, tolerance=Tolerance(ulp=1), nan_policy="forbid")


@pytest.mark.parametrize("policy, close", [("equal", True), ("ieee", False), ("forbid", False)])
def test_nan_policy_decides_whether_nan_is_close_to_nan(policy, close):
    tol = Tolerance(abs=1.0)
    assert isclose(math.nan, math.nan, tolerance=tol, nan_policy=policy) is close
    assert allclose([1.0, math.nan], [1.0, math.nan], tolerance=tol, nan_policy=policy) is close
    assert not isclose(math.nan, 1.0, tolerance=tol, nan_policy=policy)


def test_allclose_is_false_on_shape_mismatch_and_closeness_needs_a_tolerance():
    assert not allclose([1.0, 2.0], [1.0], tolerance=Tolerance(abs=1.0), nan_policy="forbid")
    with pytest.raises(HelperError):
        isclose(1.0, 1.0, tolerance=None, nan_policy="forbid")


def test_softmax_and_kl_match_their_definitions():
    p = softmax([1.0, 2.0, 3.0], 2.0)
    weights = [math.exp(x / 2.0) for x in (1.0, 2.0, 3.0)]
    assert p == pytest.approx([w / sum(weights) for w in weights], abs=1e-15)
    assert [math.exp(v) for v in log_softmax([1.0, 2.0, 3.0], 2.0)] == pytest.approx(p, abs=1e-15)
    q = [0.5, 0.25, 0.25]
    assert kl([0.5, 0.5, 0.0], q) == pytest.approx(0.5 * math.log(1.0) + 0.5 * math.log(2.0))
    assert kl(q, q) == 0.0


def test_tensor_softmax_and_kl_agree_with_lists():
    torch = pytest.importorskip("torch")
    logits = [[0.5, -1.0, 2.0], [3.0, 3.0, -2.0]]
    p = softmax(torch.tensor(logits), 1.5)
    for row, expected in zip(p.tolist(), logits):
        assert row == pytest.approx(softmax(expected, 1.5), abs=1e-12)
    q = softmax(torch.tensor(logits[::-1]))
    assert kl(p, q).tolist() == pytest.approx([kl(a, b) for a, b in zip(p.tolist(), q.tolist())], abs=1e-12)


def test_topk_indices_order_and_ties():
    assert topk_indices([5, 4, 3, 10], 2) == [3, 0]
    assert topk_indices([1, 3, 3, 2], 3) == [1, 2, 3]
    assert topk_indices([1, 2], 5) == [1, 0]
    with pytest.raises(HelperError):
        topk_indices([1], -1)


def test_non_finite_results_are_detected_for_the_forbid_policy():
    assert has_non_finite(math.inf) and has_non_finite([1.0, [2.0, math.nan]])
    assert not has_non_finite([1, 2.5, "x", None])
    torch = pytest.importorskip("torch")
    assert has_non_finite(torch.tensor([0.0, math.inf]))
    assert not has_non_finite(torch.tensor([1, 2]))


def test_grad_of_a_compiled_expression_is_the_autograd_gradient():
    torch = pytest.importorskip("torch")
    from pv.contracts import expr

    compiled = expr.compile_expression("grad(sum(exp(v) * 2.0), v)", ["v"], label="grad test")
    x = torch.tensor([0.0, 1.0, -2.0])
    assert torch.allclose(compiled({"v": requires_grad(x)}), 2.0 * x.exp())
    assert not x.requires_grad  # the input itself is never marked


def test_grad_is_zero_where_the_output_does_not_depend_on_the_input():
    torch = pytest.importorskip("torch")
    x, y = requires_grad(torch.ones(3)), requires_grad(torch.ones(2))
    assert torch.equal(grad((y * 3).sum(), x), torch.zeros(3))


def test_grad_refuses_what_autograd_cannot_differentiate():
    torch = pytest.importorskip("torch")
    x = requires_grad(torch.ones(3))
    with pytest.raises(HelperError, match="scalar"):
        grad(x * 2, x)
    with pytest.raises(HelperError, match="requires_grad"):
        grad(x.sum(), torch.ones(3))
    with pytest.raises(HelperError, match="floating-point"):
        requires_grad(torch.ones(3, dtype=torch.int64))


def test_where_chooses_per_entry_with_broadcasting():
    torch = pytest.importorskip("torch")
    rows = tensor([True, False])
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.equal(where(rows[:, None], a, b), torch.tensor([[0.0] * 3, [1.0] * 3]))
    assert where([True, False], 5, 7).tolist() == [5, 7]


def test_tensor_infers_the_dtype_of_plain_values():
    torch = pytest.importorskip("torch")
    assert tensor([True, False]).dtype == torch.bool
    assert tensor([[1, 2]]).dtype == torch.int64
    assert tensor([1.5]).dtype == torch.float32

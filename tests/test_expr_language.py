"""The contract expression language: what it accepts, what it refuses, and that refused text never runs."""

from __future__ import annotations

import pytest

from pv.contracts import expr, expr_helpers
from pv.contracts.expr_helpers import HelperError

NAMES = ["x", "l", "N", "K", "flag"]


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("x + 2 * 3 - 1", {"x": 4}, 9),
        ("x ** 2 // 3 % 5", {"x": 5}, 3),
        ("1 < x <= 5 and not flag", {"x": 5, "flag": False}, True),
        ("x if flag else -x", {"x": 3, "flag": False}, -3),
        ("l[1:3] == [2, 3] and l[-1] == 4 and l[::-1][0] == 4", {"l": [1, 2, 3, 4]}, True),
        ("sum(v * v for v in l if v % 2 == 0)", {"l": [1, 2, 3, 4]}, 20),
        ("[i for i, v in enumerate(l) if v > 2]", {"l": [1, 2, 3, 4]}, [2, 3]),
        ("{a + b for a in range(3) for b in range(a)}", {}, {1, 2, 3}),
        ("sorted(l, reverse=True)[0] == max(l) and min(l) == 1", {"l": [3, 1, 2]}, True),
        ("x is None or x in (1, 2)", {"x": None}, True),
        ("set(topk_indices(l[:N], K)) == {i for i in topk_indices(l, K) if i < N}",
         {"l": [5, 4, 3, 10], "N": 3, "K": 2}, False),
        ("set(topk_indices(l[:N], K)) == {i for i in topk_indices(l, K) if i < N}",
         {"l": [10, 9, 3, 5], "N": 3, "K": 2}, True),
        ("inf > x and pi > 3", {"x": 1}, True),
    ],
)
def test_accepted_expressions_evaluate(text, env, expected):
    assert expr.check_expression(text, NAMES) == []
    assert expr.compile_expression(text, NAMES)(env) == expected


@pytest.mark.parametrize(
    "text, kind",
    [
        ("__import__('os').system('touch PV_INJECTION_MARKER')", expr.CALL),
        ("().__class__.__base__.__subclasses__()", expr.CALL),
        ("x.__class__", expr.ATTRIBUTE),
        ("x.real", expr.ATTRIBUTE),
        ("l.append(1)", expr.CALL),
        ("lambda: 1", expr.CONSTRUCT),
        ("(y := 1)", expr.CONSTRUCT),
        ("f'{x}'", expr.CONSTRUCT),
        ("{1: 2}", expr.CONSTRUCT),
        ("[*l]", expr.CONSTRUCT),
        ("len(*l)", expr.CONSTRUCT),
        ("x & 1", expr.CONSTRUCT),
        ("b'bytes'", expr.CONSTRUCT),
        ("open('f')", expr.CALL),
        ("eval('1')", expr.CALL),
        ("getattr(x, 'real')", expr.CALL),
        ("len(l, l)", expr.CALL),
        ("softmax(l, dim=0)", expr.CALL),
        ("__builtins__", expr.NAME),
        ("unknown + 1", expr.NAME),
        ("len", expr.NAME),
        ("[len for len in l]", expr.NAME),
        ("x = 1", expr.SYNTAX),
        ("import os", expr.SYNTAX),
        ("", expr.SYNTAX),
        ("(" * 300 + "x" + ")" * 300, expr.SYNTAX),
        ("x + " * 1000 + "x", expr.SYNTAX),
    ],
)
def test_refused_expressions_name_the_kind_of_problem(text, kind):
    problems = expr.check_expression(text, NAMES)
    assert kind in {problem.kind for problem in problems}, problems
    with pytest.raises(expr.ExpressionError):
        expr.compile_expression(text, NAMES)


def test_refused_text_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in (
        "__import__('os').system('touch PV_INJECTION_MARKER')",
        "(lambda: open('PV_INJECTION_MARKER', 'w'))()",
        "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0](['touch', 'PV_INJECTION_MARKER'])",
    ):
        with pytest.raises(expr.ExpressionError):
            expr.compile_expression(text, NAMES)
    assert not (tmp_path / "PV_INJECTION_MARKER").exists()


def test_compiled_expressions_see_no_builtins():
    compiled = expr.compile_expression("len(l)", NAMES)
    assert set(compiled.function.__globals__["__builtins__"]) == {"__import__"}
    assert compiled.params == ("l",)


def test_bound_implementations_can_be_called_but_not_read():
    assert expr.check_expression("f(x, k=2) > 0", ["x"], ["f"]) == []
    kinds = {p.kind for p in expr.check_expression("f", ["x"], ["f"])}
    assert kinds == {expr.NAME}
    kinds = {p.kind for p in expr.check_expression("f(**x)", ["x"], ["f"])}
    assert kinds == {expr.CONSTRUCT}


def test_comprehension_variables_are_scoped():
    assert expr.check_expression("[v for v in l] and v", NAMES)[0].message.startswith("unknown name 'v'")
    assert expr.check_expression("[w for v in l for w in range(v)]", NAMES) == []


def test_size_guards_stop_runaway_arithmetic():
    for text in ("2 ** 100000", "[0] * 10 ** 8", "sum(range(10 ** 9))"):
        with pytest.raises(HelperError):
            expr.compile_expression(text, NAMES)({})
    assert expr.compile_expression("2 ** 10 * 3", NAMES)({}) == 3072


@pytest.mark.parametrize("text", [
    "((10 ** 9999) ** 9999) ** 9999",  # each exponent is small, the integer is not
    "[len(c) for a in [[0] * 1000] for b in [a * 1000] for c in [b * 1000]]",  # repeated repeats
    "[len(c) for a in [[0] * 600000] for b in [a + a] for c in [b + b]]",  # doubling by '+'
    "[c for a in [2 ** 9999] for b in [a * a] for c in [b ** 100]]",  # squaring big integers
])
def test_size_guards_bound_results_not_only_operands(text):
    with pytest.raises(HelperError):
        expr.compile_expression(text, NAMES)({})


@pytest.mark.parametrize("text", [
    "[[0] * 1000000 for a in range(1000000)]",  # each bound holds, nesting multiplies them
    "sum(a * b for a in range(10000) for b in range(10000))",  # 10^8 steps of plain arithmetic
    "tensor([[0] * 1000000] * 1000)",  # a list of shared rows, expanded by tensor()
    "len(tensor(list(range(100000)))[:, None] - tensor(list(range(100000))))",  # broadcasting
    "len(tensor(list(range(1000000)))[:, None] < tensor(list(range(1000000))))",  # broadcasting by a comparison
])
def test_work_budget_bounds_a_whole_evaluation(text):
    with pytest.raises(HelperError):
        expr.compile_expression(text, NAMES)({})


def test_work_budget_restarts_with_each_evaluation():
    count = expr.compile_expression("len([v for v in range(900000)])", NAMES)
    assert [count({}) for _ in range(3)] == [900000] * 3  # 2.7M steps in all, 0.9M per evaluation


def test_size_guards_leave_ordinary_arithmetic_alone():
    run = lambda text: expr.compile_expression(text, NAMES)({})  # noqa: E731
    assert run("[0] * 3 + [1] * 2") == [0, 0, 0, 1, 1]
    assert run("'ab' * 2 + 'c'") == "ababc"
    assert run("(2 ** 31 - 1) * 2 + 2") == 2 ** 32
    assert run("2 ** -1 + 0.5 * 2") == 1.5


def test_attribute_whitelist_reads_shape():
    torch = pytest.importorskip("torch")
    compiled = expr.compile_expression("x.shape[1] == 3 and x.ndim == 2", NAMES)
    assert compiled({"x": torch.zeros(2, 3)}) is True
    assert compiled({"x": torch.zeros(3, 2)}) is False


def test_problem_positions_point_into_the_expression():
    (problem,) = expr.check_expression("x + y", NAMES)
    assert (problem.line, problem.col) == (1, 5)


#: Tensors compared whole by ``in``, ``not in``, ``min``/``max`` of several values and chained
#: comparisons: each broadcasts 4000 x 4000 elements (over the limit) or has no truth value.
BROADCAST_BY_MEMBERSHIP_AND_ORDER = [
    "tensor(list(range(4000)))[:, None] in tensor(list(range(4000)))",
    "tensor(list(range(4000)))[:, None] not in tensor(list(range(4000)))",
    "tensor(list(range(4000)))[:, None] in [tensor(list(range(4000)))]",
    "1 in [tensor(list(range(4000)))]",
    "max(tensor(list(range(4000)))[:, None], tensor(list(range(4000))))",
    "min(tensor(list(range(4000)))[:, None], tensor(list(range(4000))))",
    "min([tensor(list(range(4000)))[:, None], tensor(list(range(4000)))])",
    "tensor(list(range(40)))[:, None] < tensor(list(range(40))) < tensor(list(range(40)))[:, None]",
]


@pytest.mark.parametrize("text", BROADCAST_BY_MEMBERSHIP_AND_ORDER)
def test_membership_order_and_chains_of_tensors_are_refused_before_they_broadcast(text):
    pytest.importorskip("torch")
    with pytest.raises(HelperError):
        expr.compile_expression(text, NAMES)({})


def test_membership_in_a_tensor_is_charged_by_its_broadcast_size():
    torch = pytest.importorskip("torch")
    compiled = expr.compile_expression("x in l", NAMES)
    assert compiled({"x": torch.zeros(2000, 1), "l": torch.ones(1000)}) is False
    read = 3000 // expr_helpers.TENSOR_ELEMENTS_PER_UNIT
    assert compiled.budget.used > 100 * read  # 2 million elements compared, not 3000 read
    repeated = expr.compile_expression("[x in l for i in range(100)]", NAMES)
    with pytest.raises(HelperError, match="units of work"):
        repeated({"x": torch.zeros(2000, 1), "l": torch.ones(1000)})


def test_membership_and_order_of_small_values_still_work():
    torch = pytest.importorskip("torch")
    run = lambda text, **env: expr.compile_expression(text, NAMES)(env)  # noqa: E731
    assert run("2 in [1, 2] and 3 not in (1, 2)") is True
    assert bool(run("1.0 in x and max(x) == 3", x=torch.tensor([1.0, 2.0, 3.0])))
    assert bool(run("max(x, 2) == x and min([x, 5]) == x", x=torch.tensor([4])))
    assert run("x in [x, 1]", x=torch.ones(1)) is True

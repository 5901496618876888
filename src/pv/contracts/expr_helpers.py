"""The helper vocabulary of contract expressions (the only functions they can call).

Each helper accepts plain Python values (numbers, lists, tuples) and, where it
makes sense, torch tensors; torch is imported only when a tensor is seen, so
this module stays light. Reference computations on tensors (softmax, KL) run in
float64. Closeness (``isclose``/``allclose``) uses the tolerance and NaN policy
the contract declares: :func:`namespace` binds them per check.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import functools
import math
import operator
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pv._util.errors import InvalidValue

#: Longest ``range`` a comprehension may walk.
MAX_RANGE = 1_000_000
#: Largest exponent of ``**``.
MAX_EXPONENT = 10_000
#: Longest sequence (string, list, tuple) that ``*`` and ``+`` may build.
MAX_SEQUENCE = 1_000_000
#: Most bits of an integer that ``**`` and ``*`` may build.
MAX_INT_BITS = 1_000_000
#: Most units of work (items read and built) of one evaluation of an expression.
MAX_WORK = 1_000_000
#: Most elements of a tensor that an operator or ``tensor()`` may build.
MAX_TENSOR_ELEMENTS = 10_000_000
#: Tensor elements that cost one unit of work (tensor operators are vectorised).
TENSOR_ELEMENTS_PER_UNIT = 16
#: Wall-clock seconds one evaluation of an expression may take.
MAX_SECONDS = 10.0
#: Units of work between two readings of the clock by the meter.
CLOCK_EVERY = 64
#: Largest ``ndigits`` of ``round`` (an integer of ``MAX_INT_BITS`` bits has fewer decimal digits).
MAX_ROUND_DIGITS = 310_000
NAN_POLICIES = ("forbid", "equal", "ieee")


class HelperError(InvalidValue):
    """A helper refused its arguments (a guard tripped, no tolerance was declared)."""


@dataclass(frozen=True)
class Tolerance:
    """Closeness: ``|a-b| <= abs + rel*max(|a|,|b|)``, or within ``ulp`` units in the last place."""

    abs: float = 0.0
    rel: float = 0.0
    ulp: int = 0

    def to_json(self) -> dict[str, float]:
        return {"abs": self.abs, "rel": self.rel, "ulp": self.ulp}


def _torch() -> Any:
    import torch

    return torch


def is_tensor(value: Any) -> bool:
    """True for a torch tensor; never imports torch (no tensor exists before it is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor64(value: Any) -> Any:
    torch = _torch()
    if is_tensor(value):
        return value.detach().to("cpu", torch.float64)
    return torch.tensor(value, dtype=torch.float64)


def _scalar_close(a: Any, b: Any, tol: Tolerance, nan_equal: bool) -> bool:
    a, b = float(a), float(b)
    if a == b:
        return True
    if math.isnan(a) or math.isnan(b):
        return nan_equal and math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return False
    diff = builtins.abs(a - b)
    larger = builtins.max(builtins.abs(a), builtins.abs(b))
    if diff <= tol.abs + tol.rel * larger:
        return True
    return tol.ulp > 0 and diff <= tol.ulp * math.ulp(larger)


def _spacing(magnitude: Any, dtype: Any) -> Any:
    """Units in the last place of ``magnitude`` (float64 values) in ``dtype``."""
    torch = _torch()
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(magnitude.clamp_min(info.tiny))
    return torch.ldexp(torch.full_like(magnitude, info.eps), exponent - 1)


def _tensor_close(a: Any, b: Any, tol: Tolerance, nan_equal: bool) -> bool:
    torch = _torch()
    dtypes = [x.dtype for x in (a, b) if is_tensor(x) and x.dtype.is_floating_point]
    coarsest = builtins.max(dtypes, key=lambda d: torch.finfo(d).eps) if dtypes else torch.float64
    a64, b64 = _tensor64(a), _tensor64(b)
    if a64.shape != b64.shape:
        return False
    diff = (a64 - b64).abs()
    larger = torch.maximum(a64.abs(), b64.abs())
    close = (a64 == b64) | (diff <= tol.abs + tol.rel * larger)
    if tol.ulp > 0:
        close |= diff <= tol.ulp * _spacing(larger, coarsest)
    if nan_equal:
        close |= a64.isnan() & b64.isnan()
    return bool(close.all())


def _sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _all_close(a: Any, b: Any, tol: Tolerance, nan_equal: bool) -> bool:
    if is_tensor(a) or is_tensor(b):
        return _tensor_close(a, b, tol, nan_equal)
    if _sequence(a) or _sequence(b):
        if not (_sequence(a) and _sequence(b)) or len(a) != len(b):
            return False
        return builtins.all(_all_close(x, y, tol, nan_equal) for x, y in zip(a, b))
    return _scalar_close(a, b, tol, nan_equal)


def isclose(a: Any, b: Any, *, tolerance: Tolerance | None, nan_policy: str) -> bool:
    """Two scalars within the contract's tolerance."""
    if tolerance is None:
        raise HelperError("isclose() needs the check to declare a tolerance")
    return _scalar_close(a, b, tolerance, nan_policy == "equal")


def allclose(a: Any, b: Any, *, tolerance: Tolerance | None, nan_policy: str) -> bool:
    """Element-wise closeness of equal-shaped lists or tensors (a shape mismatch is not close)."""
    if tolerance is None:
        raise HelperError("allclose() needs the check to declare a tolerance")
    return _all_close(a, b, tolerance, nan_policy == "equal")


def equal(a: Any, b: Any) -> bool:
    """Exact equality of values, lists or tensors (shapes must match)."""
    if is_tensor(a) or is_tensor(b):
        torch = _torch()
        a_t, b_t = (x if is_tensor(x) else torch.tensor(x) for x in (a, b))
        return bool(a_t.shape == b_t.shape and torch.equal(a_t.to(b_t.dtype), b_t))
    return bool(a == b)


def tolist(value: Any) -> Any:
    """A tensor as nested lists; other values unchanged."""
    return value.tolist() if is_tensor(value) else value


def _elements(value: Any) -> list:
    """All scalars of a value (nested lists and tensors are flattened)."""
    value = tolist(value)
    if _sequence(value):
        return [scalar for item in value for scalar in _elements(item)]
    return [value]


def _reduce_tensor(name: str, value: Any, args: tuple, reduce: Callable) -> Any:
    if len(args) == 0 and is_tensor(value):
        return reduce(value)
    if name in ("min", "max"):
        _check_orderable(name, (value, *args) if args else value)
    return getattr(builtins, name)(value, *args)


def _check_orderable(name: str, values: Any) -> None:
    """Refuse ``min``/``max`` of several values among which is a tensor of several elements: comparing
    it broadcasts against the others (unbounded) and the result has no single truth value."""
    if not isinstance(values, (list, tuple)) or _symbolic.get():
        return  # symbolic values are plain (reading their items would fork the engine's paths)
    for value in values:
        if is_tensor(value) and value.numel() > 1:
            raise HelperError(f"{name}() of several values: one is a tensor of shape {tuple(value.shape)},"
                              f" which has no single order; {name}(t) gives its {'smallest' if name == 'min' else 'largest'}"
                              " entry, where() chooses element-wise")


def sum_(value: Any, *args: Any) -> Any:
    """The language's ``sum``: all entries of a tensor, else the builtin over numbers."""
    if args and isinstance(args[0], (str, bytes, list, tuple)):
        raise HelperError("sum() adds numbers; build sequences with a comprehension")
    return _reduce_tensor("sum", value, args, lambda t: t.sum())


def min_(value: Any, *args: Any) -> Any:
    """The language's ``min``: the smallest entry of a tensor, else the builtin."""
    return _reduce_tensor("min", value, args, lambda t: t.min())


def max_(value: Any, *args: Any) -> Any:
    """The language's ``max``: the largest entry of a tensor, else the builtin."""
    return _reduce_tensor("max", value, args, lambda t: t.max())


def all_(value: Any) -> bool:
    """Every entry true (tensor or iterable)."""
    return bool(value.all()) if is_tensor(value) else builtins.all(value)


def any_(value: Any) -> bool:
    """Some entry true (tensor or iterable)."""
    return bool(value.any()) if is_tensor(value) else builtins.any(value)


def _converter(kind: type) -> Callable[..., Any]:
    def convert(value: Any = ()) -> Any:
        return kind(tolist(value))

    convert.__name__ = kind.__name__
    return convert


def sorted_(value: Any, *, reverse: bool = False) -> list:
    """A sorted list of the entries (a tensor as nested lists)."""
    return builtins.sorted(tolist(value), reverse=reverse)


def range_(*args: int) -> range:
    """``range`` refusing more than :data:`MAX_RANGE` steps."""
    steps = builtins.range(*args)
    if len(steps) > MAX_RANGE:
        raise HelperError(f"range of {len(steps)} steps is longer than {MAX_RANGE}")
    return steps


def _check_int_bits(bits: int, operator: str) -> None:
    if bits > MAX_INT_BITS:
        raise HelperError(f"integer {operator} of about {bits} bits is larger than {MAX_INT_BITS} bits")


def _check_sequence_length(length: int, operator: str) -> None:
    if length > MAX_SEQUENCE:
        raise HelperError(f"sequence {operator} of {length} items is longer than {MAX_SEQUENCE}")


class TimeLimitExceeded(HelperError):
    """One evaluation ran past its wall-clock deadline (the meter's, or its engine's)."""


#: The deadline (``time.monotonic()`` seconds) of the engine running now, if any.
_engine_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("pv_engine_deadline", default=None)


#: True while a symbolic engine (CrossHair) runs: values are symbolic, so the meter counts
#: one unit per operation and leaves time to that engine's own per-path and per-condition limits.
_symbolic: contextvars.ContextVar[bool] = contextvars.ContextVar("pv_symbolic", default=False)


@contextlib.contextmanager
def symbolic_values() -> Iterator[None]:
    """Meter the evaluations inside the block by operation counts alone (their values are
    symbolic: measuring them would fork the symbolic engine's paths)."""
    token = _symbolic.set(True)
    try:
        yield
    finally:
        _symbolic.reset(token)


@contextlib.contextmanager
def time_limit(deadline: float) -> Iterator[None]:
    """Every evaluation inside the block stops at ``deadline`` (``time.monotonic()``), as the
    engine running it must (``budget.seconds``)."""
    token = _engine_deadline.set(deadline)
    try:
        yield
    finally:
        _engine_deadline.reset(token)


#: Values a container's slot already pays for (the meter charged building big ones).
_SCALAR_TYPES = frozenset({int, float, bool, str, bytes, complex, type(None)})


def _shallow(value: Any) -> int:
    """Units of work to build ``value`` itself (a container's slots, not what they hold)."""
    kind = value.__class__
    if kind is int:
        return 1 + value.bit_length() // 64
    if kind is float or kind is bool or value is None:
        return 1
    if is_tensor(value):
        return 1 if value._is_view() else 1 + value.numel() // TENSOR_ELEMENTS_PER_UNIT
    if isinstance(value, (str, bytes)):
        return 1 + len(value) // 8
    if isinstance(value, int):
        return 1 + value.bit_length() // 64
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return 1 + len(value)
    return 1


class WorkBudget:
    """The meter of one evaluation of an expression: every operator and helper charges it
    by the size of what it reads and of what it builds, at most :data:`MAX_WORK` units,
    and it stops the evaluation at its wall-clock deadline (:data:`MAX_SECONDS`, or the
    engine's :func:`time_limit` if sooner).

    Sizes: one unit per scalar, container slot, 8 characters of a string or 64 bits of an
    integer, one per :data:`TENSOR_ELEMENTS_PER_UNIT` tensor elements (one per element where
    a helper turns a tensor into Python values). Each guard on its own (a range, a
    sequence, a tensor) still lets nesting multiply them; the meter bounds the total.
    :meth:`reset` starts a new evaluation.
    """

    def __init__(self, limit: int = MAX_WORK, seconds: float = MAX_SECONDS) -> None:
        self.limit = limit
        self.seconds = seconds
        self.used = 0
        self.deadline = math.inf
        self.symbolic = False

    def reset(self) -> None:
        """Start a new evaluation: no work done, the deadline from now."""
        self.used = 0
        self.symbolic = _symbolic.get()
        if self.symbolic:
            self.deadline = math.inf
            return
        engine = _engine_deadline.get()
        own = time.monotonic() + self.seconds
        self.deadline = own if engine is None else builtins.min(own, engine)

    def spend(self, amount: int) -> None:
        """Count ``amount`` units of work; refuse past the limit or the deadline (read every
        :data:`CLOCK_EVERY` units)."""
        before = self.used
        self.used += amount
        if self.used > self.limit:
            raise HelperError(f"the expression does more than {self.limit} units of work"
                              " (items read and built by its operators, helpers and comprehensions)")
        if (self.used // CLOCK_EVERY != before // CLOCK_EVERY or amount >= CLOCK_EVERY) and not self.symbolic \
                and time.monotonic() > self.deadline:
            raise TimeLimitExceeded("the expression ran past its time limit")

    def size(self, value: Any, rate: int = TENSOR_ELEMENTS_PER_UNIT) -> int:
        """Units of work to read all of ``value`` (nested containers walked, counted as read);
        refuses as soon as that passes what the evaluation has left."""
        left = self.limit - self.used
        total, stack = 0, [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple, set, frozenset)):
                total += 1 + len(item)  # one unit a slot; nested values are walked too
                if total <= left:
                    stack += [child for child in item if child.__class__ not in _SCALAR_TYPES]
            elif is_tensor(item):
                total += 1 + item.numel() // rate
            elif isinstance(item, dict):
                total += 1 + len(item)
                stack += [*item.keys(), *item.values()]
            elif isinstance(item, range):
                total += 1 + len(item)
            else:
                total += _shallow(item)
            if total > left:
                self.spend(total)
        return total

    def iterate(self, iterable: Any) -> Any:
        """``iterable``'s items, one unit of work each (the iterable of every comprehension)."""
        for item in iterable:
            self.spend(1)
            yield item

    def metered(self, function: Callable[..., Any], reads: str = "deep",
                rate: int = TENSOR_ELEMENTS_PER_UNIT) -> Callable[..., Any]:
        """``function`` charging the meter: before the call, what it reads (``"deep"``: every
        argument whole, ``"compare"``: that and the tensor elements the comparison
        ``(left, symbol, right)`` compares, ``"shallow"``: the arguments' own slots, ``"none"``);
        after it, what it built; an iterator it returns charges per item."""
        spend, size = self.spend, self.size

        def apply(*args: Any, **kwargs: Any) -> Any:
            if self.symbolic:
                spend(1)
                return function(*args, **kwargs)
            if reads in ("deep", "compare"):
                spend(size((args, tuple(kwargs.values())), rate))
            if reads == "compare":
                spend(compared_elements(*args) // rate)
            elif reads == "shallow":
                spend(_shallow(args[0]) + _shallow(args[-1]))
            else:
                spend(1)
            result = function(*args, **kwargs)
            if isinstance(result, (zip, enumerate, map, filter)):
                return self.iterate(result)
            spend(_shallow(result))
            return result

        apply.__name__ = getattr(function, "__name__", "helper")
        return apply


def _check_broadcast(*operands: Any, operator: str) -> int:
    """The number of elements of a tensor operation's broadcast result (0 without a tensor, or
    when the shapes do not broadcast); refuse more than :data:`MAX_TENSOR_ELEMENTS`."""
    if not builtins.any(is_tensor(x) for x in operands):
        return 0
    torch = _torch()
    shapes = [tuple(x.shape) if is_tensor(x) else shape(x) for x in operands]
    try:
        result = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return 0  # not broadcastable: the operator raises its own error
    elements = math.prod(result)
    if elements > MAX_TENSOR_ELEMENTS:
        raise HelperError(f"tensor {operator} of shape {tuple(result)} has more than {MAX_TENSOR_ELEMENTS} elements")
    return elements


def guarded_binary(operator: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    """``operator`` refusing tensor results larger than :data:`MAX_TENSOR_ELEMENTS` (the language's
    ``-``, ``/``, ``//`` and comparisons; ``**``, ``*``, ``+`` and ``%`` have guards of their own that
    also check this)."""

    def apply(left: Any, right: Any) -> Any:
        _check_broadcast(left, right, operator=symbol)
        return operator(left, right)

    return apply


def guarded_pow(base: Any, exponent: Any) -> Any:
    """``base ** exponent`` refusing huge exponents and huge integer results (the language's ``**``)."""
    _check_broadcast(base, exponent, operator="**")
    if not is_tensor(exponent) and builtins.abs(exponent) > MAX_EXPONENT:
        raise HelperError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        _check_int_bits(base.bit_length() * exponent, "**")
    return base**exponent


def guarded_mul(left: Any, right: Any) -> Any:
    """``left * right`` refusing sequences longer than :data:`MAX_SEQUENCE` and integers
    of more than :data:`MAX_INT_BITS` bits (the language's ``*``)."""
    _check_broadcast(left, right, operator="*")
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            _check_sequence_length(len(sequence) * count, "*")
    if isinstance(left, int) and isinstance(right, int):
        _check_int_bits(left.bit_length() + right.bit_length(), "*")
    return left * right


def guarded_add(left: Any, right: Any) -> Any:
    """``left + right`` refusing to build a sequence longer than :data:`MAX_SEQUENCE` (the language's ``+``)."""
    _check_broadcast(left, right, operator="+")
    if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        _check_sequence_length(len(left) + len(right), "+")
    return left + right


def guarded_mod(left: Any, right: Any) -> Any:
    """``left % right`` on numbers and tensors; string formatting is not in the language."""
    if isinstance(left, (str, bytes)):
        raise HelperError("'%' formats strings, which expressions cannot do")
    _check_broadcast(left, right, operator="%")
    return left % right


def _advanced_index_bound(value: Any, index: Any) -> int:
    """At most how many elements ``value[index]`` holds, for a tensor ``value``."""
    parts = index if isinstance(index, tuple) else (index,)
    advanced = [p for p in parts if is_tensor(p) or isinstance(p, list)]
    if not advanced:
        return value.numel()
    consumed, shapes = 0, []
    for part in advanced:
        if is_tensor(part) and part.dtype == _torch().bool:
            consumed += part.ndim
            shapes.append((part.numel(),))
        else:
            consumed += 1
            shapes.append(tuple(part.shape) if is_tensor(part) else shape(part))
    try:
        indexed = math.prod(_torch().broadcast_shapes(*shapes))
    except RuntimeError:
        return 0  # not broadcastable: indexing raises its own error
    smallest = math.prod(builtins.sorted(value.shape)[:consumed]) if consumed <= value.ndim else 1
    return indexed * (value.numel() // builtins.max(smallest, 1))


def guarded_getitem(value: Any, index: Any) -> Any:
    """``value[index]`` refusing a tensor result of more than :data:`MAX_TENSOR_ELEMENTS` (the language's indexing)."""
    if is_tensor(value) and _advanced_index_bound(value, index) > MAX_TENSOR_ELEMENTS:
        raise HelperError(f"indexing a tensor of shape {tuple(value.shape)} could build more than"
                          f" {MAX_TENSOR_ELEMENTS} elements")
    return value[index]


def compared_elements(left: Any, symbol: str, right: Any) -> int:
    """How many tensor elements ``left <symbol> right`` compares: the broadcast of the two sides
    (``x in t``: of ``x`` against the tensor ``t``; ``x in [a, b]``: of ``x`` against each item).
    Refuses more than :data:`MAX_TENSOR_ELEMENTS`, and a membership test in a sequence whose
    item comparison is a tensor of several elements (it has no single truth value)."""
    if symbol in _ELEMENTWISE_COMPARISONS or (symbol in _MEMBERSHIP and is_tensor(right)):
        return _check_broadcast(left, right, operator=symbol)
    if symbol not in _MEMBERSHIP or not isinstance(right, (list, tuple)) or _symbolic.get():
        return 0  # symbolic values are plain (reading their items would fork the engine's paths)
    if not is_tensor(left) and not builtins.any(is_tensor(item) for item in right):
        return 0
    total = 0
    for item in right:
        elements = _check_broadcast(left, item, operator=symbol)
        if elements > 1:
            raise HelperError(f"'{symbol}' compares {_described(left)} with an item {_described(item)}: a tensor"
                              f" of {elements} elements, which has no single truth value; use any()/all() on ==")
        total += elements
    return total


def _described(value: Any) -> str:
    return f"of shape {tuple(value.shape)}" if is_tensor(value) else type(value).__name__


def compare(left: Any, symbol: str, right: Any) -> Any:
    """``left <symbol> right`` for one comparison of the language (tensor work guarded: see
    :func:`compared_elements`)."""
    compared_elements(left, symbol, right)
    return _COMPARISON_OPERATORS[symbol](left, right)


def compare_chain(compare: Callable[[Any, str, Any], Any], left: Any, *links: tuple[str, Callable[[], Any]]) -> Any:
    """``left op1 b op2 c ...`` as Python chains it: each right side evaluated once, in order,
    stopping at the first false comparison."""
    outcome: Any = True
    for symbol, right_side in links:
        right = right_side()
        outcome = compare(left, symbol, right)
        if is_tensor(outcome) and outcome.numel() > 1:
            raise HelperError(f"a chained comparison's '{symbol}' gives a tensor of shape {tuple(outcome.shape)},"
                              " which has no single truth value to chain on; combine element-wise with &")
        if not outcome:
            return outcome
        left = right
    return outcome


_COMPARISON_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b, "is": operator.is_, "is not": operator.is_not,
}
_ELEMENTWISE_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_MEMBERSHIP = frozenset({"in", "not in"})


def _elementwise(scalar: Callable[[float], Any], tensor_method: str) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if is_tensor(value):
            return getattr(value, tensor_method)()
        if _sequence(value):
            return [apply(item) for item in value]
        return scalar(value)

    apply.__name__ = tensor_method
    return apply


def _log(x: float) -> float:
    return -math.inf if x == 0 else math.log(x)


def _scalar_test(name: str, test: Callable[[float], bool], every: bool) -> Callable[[Any], bool]:
    """``test`` on every scalar of a value: all must pass (``every``) or one must."""

    def check(value: Any) -> bool:
        if is_tensor(value):
            flags = getattr(_torch(), name)(value)
            return bool(flags.all() if every else flags.any())
        results = (test(float(x)) for x in _elements(value))
        return builtins.all(results) if every else builtins.any(results)

    check.__name__ = name
    return check


def softmax(value: Any, temperature: float = 1.0) -> Any:
    """softmax(value / temperature) over the last dimension, computed in float64."""
    logs = log_softmax(value, temperature)
    return logs.exp() if is_tensor(logs) else [math.exp(x) for x in logs]


def log_softmax(value: Any, temperature: float = 1.0) -> Any:
    """log_softmax(value / temperature) over the last dimension, computed in float64."""
    if temperature <= 0:
        raise HelperError(f"temperature must be > 0, got {temperature}")
    if is_tensor(value):
        return _torch().log_softmax(_tensor64(value) / temperature, dim=-1)
    scaled = [float(x) / temperature for x in value]
    top = builtins.max(scaled)
    log_total = top + math.log(builtins.sum(math.exp(x - top) for x in scaled))
    return [x - log_total for x in scaled]


def kl(p: Any, q: Any) -> Any:
    """KL(p || q) = sum p*(log p - log q) over the last dimension; terms with p == 0 are 0."""
    if is_tensor(p) or is_tensor(q):
        torch = _torch()
        _check_broadcast(p, q, operator="kl()")
        p64, q64 = _tensor64(p), _tensor64(q)
        terms = torch.where(p64 > 0, p64 * (p64.log() - q64.log()), torch.zeros_like(p64))
        return terms.sum(dim=-1)
    if len(p) != len(q):
        raise HelperError(f"kl() of lengths {len(p)} and {len(q)}")
    return builtins.sum(a * (_log(a) - _log(b)) for a, b in zip(p, q) if a > 0)


def tensor(value: Any) -> Any:
    """Nested lists (or a tensor) as a CPU tensor; torch infers the dtype (bool, int64, float32)."""
    if is_tensor(value):
        return value
    elements, level = 1, value
    while isinstance(level, (list, tuple)):  # the shape, read down the first items
        elements *= len(level)
        if elements > MAX_TENSOR_ELEMENTS:
            raise HelperError(f"tensor() of more than {MAX_TENSOR_ELEMENTS} elements")
        level = level[0] if level else None
    return _torch().tensor(value)


def where(condition: Any, if_true: Any, if_false: Any) -> Any:
    """Entries of ``if_true`` where ``condition`` holds, of ``if_false`` elsewhere (torch broadcasting)."""
    torch = _torch()
    values = [x if is_tensor(x) else tensor(x) for x in (condition, if_true, if_false)]
    _check_broadcast(*values, operator="where()")
    return torch.where(values[0].to(torch.bool), values[1], values[2])


def requires_grad(value: Any) -> Any:
    """A float copy of ``value`` that autograd tracks: a leaf for :func:`grad`."""
    if not (is_tensor(value) and value.is_floating_point()):
        raise HelperError("requires_grad() takes a floating-point tensor")
    return value.detach().clone().requires_grad_(True)


def grad(output: Any, wrt: Any) -> Any:
    """d(output)/d(wrt) by autograd: ``output`` a scalar tensor computed from ``wrt``, a
    :func:`requires_grad` leaf; zeros where ``output`` does not depend on ``wrt``."""
    if not (is_tensor(output) and output.numel() == 1 and output.requires_grad):
        raise HelperError("grad() needs a scalar tensor computed from a requires_grad() tensor")
    if not (is_tensor(wrt) and wrt.requires_grad and wrt.is_leaf):
        raise HelperError("grad() differentiates with respect to a requires_grad() tensor")
    (gradient,) = _torch().autograd.grad(output.reshape(()), wrt, allow_unused=True)
    return _torch().zeros_like(wrt) if gradient is None else gradient


def topk_indices(value: Any, k: int) -> list[int]:
    """Indices of the ``k`` largest entries of a 1-D value, largest first, ties by lower index."""
    if k < 0:
        raise HelperError(f"topk_indices() with k = {k} < 0")
    items = tolist(value)
    order = builtins.sorted(builtins.range(len(items)), key=lambda i: (-items[i], i))
    return order[:k]


def argmax(value: Any) -> int:
    """Index of the first largest entry of a 1-D value."""
    items = tolist(value)
    return builtins.min(builtins.range(len(items)), key=lambda i: (-items[i], i))


def argmin(value: Any) -> int:
    """Index of the first smallest entry of a 1-D value."""
    items = tolist(value)
    return builtins.min(builtins.range(len(items)), key=lambda i: (items[i], i))


def shape(value: Any) -> tuple[int, ...]:
    """Shape of a tensor, or of nested lists (from the first element of each level)."""
    if is_tensor(value):
        return tuple(value.shape)
    if _sequence(value):
        return (len(value),) + (shape(value[0]) if len(value) else ())
    return ()


def numel(value: Any) -> int:
    """Number of scalars in a tensor or nested list."""
    return value.numel() if is_tensor(value) else len(_elements(value))


def prod(value: Any) -> Any:
    """Product of the entries of a tensor or a sequence of numbers (an integer product
    of more than :data:`MAX_INT_BITS` bits is refused before it is built)."""
    if is_tensor(value):
        return value.prod()
    items = list(value)
    bits = builtins.sum(x.bit_length() for x in items if isinstance(x, int))
    _check_int_bits(bits, "prod()")
    return math.prod(items)


def round_(value: Any, ndigits: Any = None) -> Any:
    """``round``, refusing an ``ndigits`` beyond :data:`MAX_ROUND_DIGITS` either way."""
    if isinstance(ndigits, int) and builtins.abs(ndigits) > MAX_ROUND_DIGITS:
        raise HelperError(f"round() to {ndigits} digits: at most {MAX_ROUND_DIGITS} either way")
    return builtins.round(value) if ndigits is None else builtins.round(value, ndigits)


def mean(value: Any) -> Any:
    """Arithmetic mean (float64 for tensors); an empty sequence is an error."""
    if is_tensor(value):
        return _tensor64(value).mean()
    items = list(value)
    if not items:
        raise HelperError("mean() of an empty sequence")
    return builtins.sum(items) / len(items)


def dtype(value: Any) -> str:
    """``"float32"``, ``"bfloat16"``, ... for a tensor; ``"float64"``/``"int"``/``"bool"`` otherwise."""
    if is_tensor(value):
        return str(value.dtype).removeprefix("torch.")
    return {bool: "bool", int: "int", float: "float64"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Helper:
    """A callable of the vocabulary with its accepted positional count and keywords."""

    function: Callable[..., Any]
    min_args: int
    max_args: int
    keywords: tuple[str, ...] = ()
    summary: str = ""
    #: what a call reads, charged before it runs: its arguments whole (``deep``), their own slots, or nothing
    reads: str = "deep"
    #: tensor elements per unit read: 1 where the helper turns a tensor into Python values
    rate: int = TENSOR_ELEMENTS_PER_UNIT


HELPERS: dict[str, Helper] = {
    "len": Helper(builtins.len, 1, 1, reads="none", summary="length (first dimension of a tensor)"),
    "min": Helper(min_, 1, 8, summary="smallest argument, or smallest entry of one value"),
    "max": Helper(max_, 1, 8, summary="largest argument, or largest entry of one value"),
    "abs": Helper(builtins.abs, 1, 1, summary="absolute value (element-wise on tensors)"),
    "sum": Helper(sum_, 1, 2, summary="sum of an iterable or of all tensor entries"),
    "all": Helper(all_, 1, 1, summary="every entry true"),
    "any": Helper(any_, 1, 1, summary="some entry true"),
    "range": Helper(range_, 1, 3, reads="none", summary=f"range, at most {MAX_RANGE} steps"),
    "sorted": Helper(sorted_, 1, 1, ("reverse",), rate=1, summary="sorted list"),
    "list": Helper(_converter(list), 0, 1, rate=1, summary="list (tensors become nested lists)"),
    "tuple": Helper(_converter(tuple), 0, 1, rate=1, summary="tuple"),
    "set": Helper(_converter(set), 0, 1, rate=1, summary="set"),
    "enumerate": Helper(builtins.enumerate, 1, 1, reads="none", summary="(index, item) pairs"),
    "zip": Helper(builtins.zip, 1, 4, reads="none", summary="items side by side"),
    "round": Helper(round_, 1, 2, summary="rounded number"),
    "int": Helper(builtins.int, 1, 1, summary="integer conversion"),
    "float": Helper(builtins.float, 1, 1, summary="float conversion"),
    "bool": Helper(builtins.bool, 1, 1, reads="none", summary="truth value"),
    "isclose": Helper(isclose, 2, 2, summary="scalars within the declared tolerance"),
    "allclose": Helper(allclose, 2, 2, summary="lists/tensors within the declared tolerance"),
    "equal": Helper(equal, 2, 2, summary="exact equality, shapes included"),
    "isfinite": Helper(_scalar_test("isfinite", math.isfinite, True), 1, 1, summary="every entry finite"),
    "isnan": Helper(_scalar_test("isnan", math.isnan, False), 1, 1, summary="some entry NaN"),
    "isinf": Helper(_scalar_test("isinf", math.isinf, False), 1, 1, summary="some entry infinite"),
    "exp": Helper(_elementwise(math.exp, "exp"), 1, 1, summary="e**x (element-wise)"),
    "log": Helper(_elementwise(_log, "log"), 1, 1, summary="natural log, log(0) = -inf"),
    "sqrt": Helper(_elementwise(math.sqrt, "sqrt"), 1, 1, summary="square root"),
    "floor": Helper(_elementwise(math.floor, "floor"), 1, 1, summary="round down"),
    "ceil": Helper(_elementwise(math.ceil, "ceil"), 1, 1, summary="round up"),
    "softmax": Helper(softmax, 1, 2, ("temperature",), summary="softmax over the last dim, float64"),
    "log_softmax": Helper(log_softmax, 1, 2, ("temperature",), summary="log-softmax, float64"),
    "kl": Helper(kl, 2, 2, summary="KL(p || q) of probability vectors"),
    "tensor": Helper(tensor, 1, 1, summary="nested lists as a tensor (dtype inferred)"),
    "where": Helper(where, 3, 3, summary="element-wise choice between two values by a condition"),
    "requires_grad": Helper(requires_grad, 1, 1, reads="none", summary="a copy of a float tensor that autograd tracks"),
    "grad": Helper(grad, 2, 2, reads="none", summary="gradient of a scalar tensor w.r.t. a requires_grad() tensor"),
    "topk_indices": Helper(topk_indices, 2, 2, rate=1, summary="indices of the k largest, ties by index"),
    "argmax": Helper(argmax, 1, 1, rate=1, summary="index of the first largest entry"),
    "argmin": Helper(argmin, 1, 1, rate=1, summary="index of the first smallest entry"),
    "shape": Helper(shape, 1, 1, reads="none", summary="shape tuple"),
    "numel": Helper(numel, 1, 1, rate=1, summary="number of scalars"),
    "prod": Helper(prod, 1, 1, summary="product"),
    "mean": Helper(mean, 1, 1, summary="arithmetic mean"),
    "tolist": Helper(tolist, 1, 1, rate=1, summary="tensor as nested lists"),
    "dtype": Helper(dtype, 1, 1, reads="none", summary="dtype name"),
}

CONSTANTS: dict[str, float] = {"inf": math.inf, "nan": math.nan, "pi": math.pi}

_TOLERANCE_BOUND = ("isclose", "allclose")

#: The functions the rewritten operators call, and what each reads (see :meth:`WorkBudget.metered`).
OPERATOR_GUARDS: dict[str, tuple[Callable[..., Any], str]] = {
    "_pv_pow": (guarded_pow, "shallow"),
    "_pv_mul": (guarded_mul, "shallow"),
    "_pv_add": (guarded_add, "shallow"),
    "_pv_sub": (guarded_binary(operator.sub, "-"), "shallow"),
    "_pv_div": (guarded_binary(operator.truediv, "/"), "shallow"),
    "_pv_floordiv": (guarded_binary(operator.floordiv, "//"), "shallow"),
    "_pv_mod": (guarded_mod, "shallow"),
    "_pv_cmp": (compare, "compare"),
    "_pv_getitem": (guarded_getitem, "none"),
}


def namespace(tolerance: Tolerance | None = None, nan_policy: str = "forbid") -> dict[str, Any]:
    """Globals for compiled expressions: the helpers (closeness bound to ``tolerance`` and
    ``nan_policy``), the constants and the operator guards; no builtins."""
    names: dict[str, Any] = {name: helper.function for name, helper in HELPERS.items()}
    for name in _TOLERANCE_BOUND:
        names[name] = functools.partial(
            HELPERS[name].function, tolerance=tolerance, nan_policy=nan_policy
        )
    names.update(CONSTANTS)
    names.update({guard: function for guard, (function, _) in OPERATOR_GUARDS.items()})
    names["_pv_chain"] = functools.partial(compare_chain, compare)
    names["_pv_slice"] = builtins.slice
    return names


def has_non_finite(value: Any) -> bool:
    """True if a float, list or tensor holds a NaN or an infinity (the ``forbid`` NaN policy)."""
    if is_tensor(value):
        return bool(value.is_floating_point() and not _torch().isfinite(value).all())
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return builtins.any(has_non_finite(item) for item in value)
    return False

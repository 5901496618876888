"""Input domains of a check (``given:``): parsing, enumeration, strategies, symbolic types.

A domain is written as a one-key mapping (``{int: {min: 1, max: 9}}``) or, for the
unbounded plain kinds, a bare word (``bool``, ``int``, ``float``). Each domain can
say how many values it has (``size``, ``None`` when infinite), enumerate them
simplest first (exhaustive engine), build a Hypothesis strategy, and describe
itself to CrossHair as a Python annotation plus an admission test and a
conversion (choices become indices). Tensors exist only for Hypothesis.

Hypothesis, numpy and torch are imported only when a strategy or a tensor is built.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from pv._util.errors import InvalidValue
from pv._util.text import short

#: Elements a tensor domain may have at most (Hypothesis draws each one).
MAX_TENSOR_ELEMENTS = 65_536
#: Sizes of finite domains are counted up to this (enough to compare with any cap).
MAX_COUNTED = 2**64
#: Largest integer bound of a domain, in bits (inputs are generated and printed).
MAX_BOUND_BITS = 1024
TENSOR_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "uint8", "bool")
#: Element range of byte tensors (their default bounds too).
UINT8_RANGE = (0, 255)
FLOAT_WIDTHS = (16, 32, 64)
DEVICES = ("cpu", "cuda")


class DomainError(InvalidValue):
    """A ``given`` entry that is not a valid domain; ``keys`` locate it below the domain."""

    def __init__(self, message: str, keys: tuple = ()) -> None:
        super().__init__(message)
        self.keys = keys


def _float_json(value: float) -> Any:
    return value if math.isfinite(value) else {"float": repr(value)}


def to_json(value: Any) -> Any:
    """A JSON-safe form of an input or result (tensors with their dtype, shape and values)."""
    from pv.contracts.expr_helpers import is_tensor

    if is_tensor(value):
        values = value.detach().to("cpu").tolist()
        return {"tensor": {"dtype": str(value.dtype).removeprefix("torch."),
                           "shape": list(value.shape), "values": to_json(values)}}
    if isinstance(value, float):
        return _float_json(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return {"repr": repr(value)}


class Domain:
    """Base of all domains; the methods below are specialised per kind."""

    plain = True
    #: whether CrossHair reasons about the values exactly (not floats, which it models as reals)
    symbolic = False

    def size(self) -> int | None:
        return None

    def values(self) -> Iterator[Any]:
        raise NotImplementedError(f"{self.describe()} cannot be enumerated")

    def strategy(self) -> Any:
        raise NotImplementedError

    def annotation(self) -> Any:
        raise NotImplementedError

    def admits(self, raw: Any) -> bool:
        return True

    def convert(self, raw: Any) -> Any:
        return raw

    def from_json(self, data: Any) -> Any:
        return data

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def needs_cuda(self) -> bool:
        return False


def _ints_simplest_first(low: int, high: int) -> Iterator[int]:
    """Every integer of [low, high], those nearest to zero first (positive before negative)."""
    if low >= 0:
        yield from range(low, high + 1)
        return
    if high <= 0:
        yield from range(high, low - 1, -1)
        return
    yield 0
    for magnitude in range(1, max(high, -low) + 1):
        if magnitude <= high:
            yield magnitude
        if -magnitude >= low:
            yield -magnitude


@dataclass(frozen=True)
class IntDomain(Domain):
    min: int | None = None
    max: int | None = None
    symbolic = True

    def size(self) -> int | None:
        return None if self.min is None or self.max is None else saturated(self.max - self.min + 1)

    def values(self) -> Iterator[int]:
        assert self.min is not None and self.max is not None
        return _ints_simplest_first(self.min, self.max)

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.integers(min_value=self.min, max_value=self.max)

    def annotation(self) -> Any:
        return int

    def admits(self, raw: Any) -> bool:
        return (self.min is None or raw >= self.min) and (self.max is None or raw <= self.max)

    def describe(self) -> str:
        low = "-inf" if self.min is None else self.min
        high = "inf" if self.max is None else self.max
        return f"int[{low}, {high}]"


@dataclass(frozen=True)
class FloatDomain(Domain):
    min: float | None = None
    max: float | None = None
    allow_nan: bool = False
    allow_inf: bool = False
    width: int = 64

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        bounded = self.min is not None or self.max is not None
        strategy = st.floats(
            min_value=self.min, max_value=self.max, allow_nan=False,
            allow_infinity=self.allow_inf and not bounded, width=self.width,
        )
        extras = ([math.nan] if self.allow_nan else []) + ([math.inf, -math.inf] if self.allow_inf and bounded else [])
        return strategy | st.sampled_from(extras) if extras else strategy

    def annotation(self) -> Any:
        return float

    def admits(self, raw: Any) -> bool:
        if raw != raw:
            return self.allow_nan
        if raw in (math.inf, -math.inf):
            return self.allow_inf
        return (self.min is None or raw >= self.min) and (self.max is None or raw <= self.max)

    def from_json(self, data: Any) -> Any:
        return float(data["float"]) if isinstance(data, Mapping) else float(data)

    def describe(self) -> str:
        extras = "".join([", nan" if self.allow_nan else "", ", inf" if self.allow_inf else ""])
        return f"float{self.width}[{self.min}, {self.max}{extras}]"


@dataclass(frozen=True)
class BoolDomain(Domain):
    symbolic = True

    def size(self) -> int:
        return 2

    def values(self) -> Iterator[bool]:
        return iter((False, True))

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.booleans()

    def annotation(self) -> Any:
        return bool

    def describe(self) -> str:
        return "bool"


@dataclass(frozen=True)
class ChoiceDomain(Domain):
    """One of a fixed list of JSON scalars; CrossHair sees the index into the list."""

    choices: tuple
    symbolic = True

    def size(self) -> int:
        return len(self.choices)

    def values(self) -> Iterator[Any]:
        return iter(self.choices)

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.sampled_from(self.choices)

    def annotation(self) -> Any:
        return int

    def admits(self, raw: Any) -> bool:
        return 0 <= raw < len(self.choices)

    def convert(self, raw: Any) -> Any:
        return self.choices[raw]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class OptionalDomain(Domain):
    of: Domain

    @property
    def symbolic(self) -> bool:  # type: ignore[override]
        return self.of.symbolic

    @property
    def plain(self) -> bool:  # type: ignore[override]
        return self.of.plain

    def size(self) -> int | None:
        inner = self.of.size()
        return None if inner is None else saturated(inner + 1)

    def values(self) -> Iterator[Any]:
        return itertools.chain([None], self.of.values())

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.none() | self.of.strategy()

    def annotation(self) -> Any:
        return Optional[self.of.annotation()]

    def admits(self, raw: Any) -> bool:
        return raw is None or self.of.admits(raw)

    def convert(self, raw: Any) -> Any:
        return None if raw is None else self.of.convert(raw)

    def from_json(self, data: Any) -> Any:
        return None if data is None else self.of.from_json(data)

    def describe(self) -> str:
        return f"None or {self.of.describe()}"

    @property
    def needs_cuda(self) -> bool:
        return self.of.needs_cuda


@dataclass(frozen=True)
class ListDomain(Domain):
    of: Domain
    min_len: int = 0
    max_len: int | None = None

    @property
    def symbolic(self) -> bool:  # type: ignore[override]
        return self.of.symbolic

    @property
    def plain(self) -> bool:  # type: ignore[override]
        return self.of.plain

    def size(self) -> int | None:
        inner = self.of.size()
        if inner is None or self.max_len is None:
            return None
        if inner <= 1:
            return saturated(self.max_len - self.min_len + 1) if inner == 1 else int(self.min_len == 0)
        total, count = 0, saturated(inner ** min(self.min_len, 64))
        for _ in range(self.min_len, self.max_len + 1):  # grows at least twofold a step: few steps
            total = saturated(total + count)
            if total == MAX_COUNTED:
                break
            count = saturated(count * inner)
        return total

    def values(self) -> Iterator[list]:
        assert self.max_len is not None
        for length in range(self.min_len, self.max_len + 1):
            for items in itertools.product(list(self.of.values()), repeat=length):
                yield list(items)

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.lists(self.of.strategy(), min_size=self.min_len, max_size=self.max_len)

    def annotation(self) -> Any:
        return list[self.of.annotation()]  # type: ignore[misc]

    def admits(self, raw: Any) -> bool:
        if len(raw) < self.min_len or (self.max_len is not None and len(raw) > self.max_len):
            return False
        return all(self.of.admits(item) for item in raw)

    def convert(self, raw: Any) -> Any:
        return [self.of.convert(item) for item in raw]

    def from_json(self, data: Any) -> Any:
        return [self.of.from_json(item) for item in data]

    def describe(self) -> str:
        return f"list[{self.min_len}..{self.max_len}] of {self.of.describe()}"

    @property
    def needs_cuda(self) -> bool:
        return self.of.needs_cuda


@dataclass(frozen=True)
class Dim:
    min: int
    max: int


@dataclass(frozen=True)
class TensorDomain(Domain):
    """A torch tensor: dtype, per-dimension size ranges, element bounds, device."""

    dtype: str
    shape: tuple[Dim, ...]
    elements: FloatDomain | IntDomain | BoolDomain
    device: str = "cpu"

    plain = False

    def strategy(self) -> Any:
        from hypothesis import strategies as st

        return st.tuples(*(st.integers(d.min, d.max) for d in self.shape)).flatmap(self._tensors_of_shape)

    def _element_strategy(self) -> Any:
        elements = self.elements
        if isinstance(elements, FloatDomain) and self.dtype in ("float16", "bfloat16"):
            width = 16 if self.dtype == "float16" else 32  # bfloat16 values are rounded after drawing
            return FloatDomain(elements.min, elements.max, elements.allow_nan, elements.allow_inf, width).strategy()
        return elements.strategy()

    def _tensors_of_shape(self, dims: tuple[int, ...]) -> Any:
        import numpy as np
        from hypothesis.extra.numpy import arrays

        numpy_dtypes = {
            "float64": np.float64, "int64": np.int64, "int32": np.int32, "uint8": np.uint8, "bool": np.bool_,
        }
        numpy_dtype = numpy_dtypes.get(self.dtype, np.float32)
        return arrays(numpy_dtype, dims, elements=self._element_strategy()).map(self._to_tensor)

    def _to_tensor(self, array: Any) -> Any:
        import torch

        return torch.from_numpy(array.copy()).to(device=self.device, dtype=getattr(torch, self.dtype))

    def from_json(self, data: Any) -> Any:
        import torch

        spec = data["tensor"]
        values = _float_values(spec["values"])
        tensor = torch.tensor(values, dtype=getattr(torch, spec["dtype"]), device=self.device)
        return tensor.reshape(spec["shape"])

    def describe(self) -> str:
        dims = ", ".join(str(d.min) if d.min == d.max else f"{d.min}..{d.max}" for d in self.shape)
        return f"tensor {self.dtype}[{dims}] of {self.elements.describe()} on {self.device}"

    @property
    def needs_cuda(self) -> bool:
        return self.device == "cuda"


def _float_values(data: Any) -> Any:
    if isinstance(data, list):
        return [_float_values(item) for item in data]
    if isinstance(data, Mapping):
        return float(data["float"])
    return data


# ---------------------------------------------------------------- parsing


def _mapping(spec: Any, kind: str) -> Mapping:
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise DomainError(f"{kind}: expected a mapping of options, got {type(spec).__name__}", (kind,))
    return spec


def _only(spec: Mapping, kind: str, allowed: tuple[str, ...]) -> None:
    for key in spec:
        if key not in allowed:
            raise DomainError(f"{kind}: unknown option {key!r} (allowed: {', '.join(allowed)})", (kind, key))


def _number(spec: Mapping, key: str, kind: str, types: tuple = (int, float)) -> Any:
    value = spec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
        raise DomainError(f"{kind}: {key} must be a number, got {short(value)}", (kind, key))
    if isinstance(value, float) and not math.isfinite(value):
        raise DomainError(f"{kind}: {key} must be a finite number, got {value!r} (leave it out for no bound)", (kind, key))
    if isinstance(value, int) and value.bit_length() > MAX_BOUND_BITS:
        raise DomainError(f"{kind}: {key} has more than {MAX_BOUND_BITS} bits", (kind, key))
    return value


def _flag(spec: Mapping, key: str, kind: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise DomainError(f"{kind}: {key} must be true or false, got {value!r}", (kind, key))
    return value


def _bounds(low: Any, high: Any, kind: str) -> None:
    if low is not None and high is not None and low > high:
        raise DomainError(f"{kind}: min {low} is greater than max {high}", (kind, "min"))


def _parse_int(spec: Mapping) -> IntDomain:
    _only(spec, "int", ("min", "max"))
    low, high = _number(spec, "min", "int", (int,)), _number(spec, "max", "int", (int,))
    _bounds(low, high, "int")
    return IntDomain(low, high)


def _parse_float(spec: Mapping, kind: str = "float") -> FloatDomain:
    _only(spec, kind, ("min", "max", "allow_nan", "allow_inf", "width"))
    low, high = _number(spec, "min", kind), _number(spec, "max", kind)
    _bounds(low, high, kind)
    width = spec.get("width", 64)
    if width not in FLOAT_WIDTHS:
        raise DomainError(f"{kind}: width must be one of {FLOAT_WIDTHS}, got {width!r}", (kind, "width"))
    return FloatDomain(
        None if low is None else float(low), None if high is None else float(high),
        _flag(spec, "allow_nan", kind), _flag(spec, "allow_inf", kind), width,
    )


def _parse_choice(spec: Mapping) -> ChoiceDomain:
    _only(spec, "choice", ("values",))
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise DomainError("choice: values must be a non-empty list", ("choice", "values"))
    for index, value in enumerate(values):
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise DomainError(f"choice: values[{index}] must be a scalar", ("choice", "values", index))
    return ChoiceDomain(tuple(values))


def _parse_optional(spec: Mapping) -> OptionalDomain:
    _only(spec, "optional", ("of",))
    if "of" not in spec:
        raise DomainError("optional: needs 'of' (the domain of the value when present)", ("optional",))
    return OptionalDomain(_nested(spec["of"], ("optional", "of")))


def _parse_list(spec: Mapping) -> ListDomain:
    _only(spec, "list", ("of", "min_len", "max_len"))
    if "of" not in spec:
        raise DomainError("list: needs 'of' (the domain of each item)", ("list",))
    low = _number(spec, "min_len", "list", (int,)) or 0
    high = _number(spec, "max_len", "list", (int,))
    if low < 0:
        raise DomainError("list: min_len must be >= 0", ("list", "min_len"))
    _bounds(low, high, "list")
    return ListDomain(_nested(spec["of"], ("list", "of")), low, high)


def _parse_dim(dim: Any, index: int) -> Dim:
    keys = ("tensor", "shape", index)
    if isinstance(dim, int) and not isinstance(dim, bool):
        if dim < 0:
            raise DomainError(f"tensor: shape[{index}] must be >= 0", keys)
        return Dim(dim, dim)
    if isinstance(dim, Mapping) and set(dim) == {"min", "max"}:
        low, high = dim["min"], dim["max"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or not 0 <= low <= high:
            raise DomainError(f"tensor: shape[{index}] needs integers 0 <= min <= max", keys)
        return Dim(low, high)
    raise DomainError(f"tensor: shape[{index}] must be an integer or {{min, max}}", keys)


def _parse_tensor(spec: Mapping) -> TensorDomain:
    _only(spec, "tensor", ("dtype", "shape", "elements", "device"))
    dtype = spec.get("dtype", "float32")
    if dtype not in TENSOR_DTYPES:
        raise DomainError(f"tensor: dtype must be one of {', '.join(TENSOR_DTYPES)}", ("tensor", "dtype"))
    shape = spec.get("shape")
    if not isinstance(shape, list):
        raise DomainError("tensor: shape must be a list of sizes", ("tensor", "shape"))
    dims = tuple(_parse_dim(dim, index) for index, dim in enumerate(shape))
    if math.prod(d.max for d in dims) > MAX_TENSOR_ELEMENTS:
        raise DomainError(f"tensor: more than {MAX_TENSOR_ELEMENTS} elements at the largest shape", ("tensor", "shape"))
    device = spec.get("device", "cpu")
    if device not in DEVICES:
        raise DomainError(f"tensor: device must be one of {', '.join(DEVICES)}", ("tensor", "device"))
    elements_spec = _mapping(spec.get("elements"), "tensor")
    elements: FloatDomain | IntDomain | BoolDomain
    if dtype == "bool":
        elements = BoolDomain()
    elif dtype == "uint8":
        elements = _parse_int({"min": UINT8_RANGE[0], "max": UINT8_RANGE[1], **elements_spec})
        if elements.min < UINT8_RANGE[0] or elements.max > UINT8_RANGE[1]:  # type: ignore[operator]
            raise DomainError("tensor: uint8 elements must lie in [0, 255]", ("tensor", "elements"))
    elif dtype.startswith("int"):
        elements = _parse_int(elements_spec)
    else:
        elements = _parse_float({"width": 32, **elements_spec} if dtype != "float64" else elements_spec, "elements")
    return TensorDomain(dtype, dims, elements, device)


def _parse_bool(spec: Mapping) -> BoolDomain:
    _only(spec, "bool", ())
    return BoolDomain()


_PARSERS = {
    "int": _parse_int, "float": _parse_float, "bool": _parse_bool,
    "choice": _parse_choice, "optional": _parse_optional, "list": _parse_list, "tensor": _parse_tensor,
}
_BARE = {"int": IntDomain(), "float": FloatDomain(), "bool": BoolDomain()}


def _nested(spec: Any, keys: tuple) -> Domain:
    try:
        return parse_domain(spec)
    except DomainError as err:
        raise DomainError(str(err), keys + err.keys) from None


def parse_domain(spec: Any) -> Domain:
    """The domain written as ``spec``; :class:`DomainError` says what is wrong and where."""
    if isinstance(spec, str):
        if spec in _BARE:
            return _BARE[spec]
        raise DomainError(f"unknown domain {spec!r} (bare words: {', '.join(_BARE)})")
    if not isinstance(spec, Mapping) or len(spec) != 1:
        kinds = ", ".join(_PARSERS)
        raise DomainError(f"a domain is a mapping with exactly one key, one of: {kinds}")
    (kind, options), = spec.items()
    if kind not in _PARSERS:
        raise DomainError(f"unknown domain kind {kind!r} (one of: {', '.join(_PARSERS)})", (kind,))
    return _PARSERS[kind](_mapping(options, kind))


def saturated(count: int) -> int:
    """``count``, or :data:`MAX_COUNTED` if it is larger (sizes are compared with caps, never built)."""
    return count if count < MAX_COUNTED else MAX_COUNTED


def product_size(domains: Mapping[str, Domain]) -> int | None:
    """How many input combinations there are (at most :data:`MAX_COUNTED`), or ``None`` if
    some domain is infinite."""
    total = 1
    for domain in domains.values():
        size = domain.size()
        if size is None:
            return None
        total = saturated(total * size)
    return total

"""``pv mutate --audit-equivalents``: each listed equivalent tried against the original on generated inputs.

An entry of the equivalents file is a person's claim that no test can tell the
mutant from the original. The audit tests the claim: for the function that
holds the mutant, it draws arguments from the function's type hints with
Hypothesis (derandomized, so a run is repeatable), calls the original, swaps the
mutant in (:mod:`pv.mutation.live`) and calls it on copies of the same
arguments, and compares what each call gave: the value (for a tensor its dtype,
shape, strides and bytes), the type of the exception raised, and the gradients
of the floating-point tensor arguments. One difference disproves the claim.

Tensors of one call share a shape (rank 1 to 3), so that functions of several
tensors of one shape are reached; a tensor is drawn contiguous, transposed in
memory (column-major) or with a step along its last axis. What cannot be
audited is said so, with the reason: a function with an argument without a type
hint (or of a type without a strategy), a site that runs at import, a Triton
kernel (its falsifiers are the check), a nested function.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv.mutation import live
from pv.mutation.equivalents import Equivalent
from pv.mutation.generation import Site
from pv.mutation.targets import Target, find_site
from pv.mutation.worker import run_forked

#: outcomes of one entry
SAME, DIFFERS, NOT_CHECKED = "same", "differs", "not checked"
#: seconds one entry's examples may take, both sides together
AUDIT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Finding:
    key: str
    outcome: str
    detail: str
    examples: int = 0

    @property
    def differs(self) -> bool:
        return self.outcome == DIFFERS


# --- generated arguments ------------------------------------------------------------------


#: how the tensors of a call lie in memory; every generated call is made in each
LAYOUTS = ("contiguous", "column-major", "stepped")


def _laid_out(tensor: Any, layout: str) -> Any:
    """The values of a contiguous ``tensor`` in another memory layout (same shape, other strides)."""
    if layout == "column-major" and tensor.dim() >= 2:
        return tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "stepped" and tensor.dim() >= 1:
        doubled = tensor.unsqueeze(-1).expand(*tensor.shape, 2).reshape(*tensor.shape[:-1], -1).contiguous()
        return doubled[..., ::2]
    return tensor


def _in_layout(call: tuple[list[Any], dict[str, Any], bool], layout: str) -> tuple[list[Any], dict[str, Any], bool]:
    import torch

    def move(value: Any) -> Any:
        return _laid_out(value, layout) if isinstance(value, torch.Tensor) else value

    args, kwargs, gradients = call
    return [move(v) for v in args], {k: move(v) for k, v in kwargs.items()}, gradients


def _strategy(hint: Any, shape: list[int]) -> Any:
    """A Hypothesis strategy for one argument of type ``hint`` (None: no strategy for it)."""
    from hypothesis import strategies as st

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [_strategy(member, shape) for member in typing.get_args(hint)]
        return None if any(member is None for member in members) else st.one_of(*members)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(hint))
    if hint is type(None) or hint is None:
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(1, 64)
    if hint is float:
        return st.floats(0.25, 8.0)
    if hint is str:
        return st.text(max_size=8)
    if getattr(hint, "__module__", "") == "torch" and getattr(hint, "__name__", "") == "device":
        return st.just(hint("cpu"))
    if getattr(hint, "__module__", "") == "torch" and getattr(hint, "__name__", "") == "Tensor":
        size = 1
        for dim in shape:
            size *= dim
        values = st.lists(st.floats(-8, 8, width=32), min_size=size, max_size=size)
        return values.map(lambda drawn: hint(drawn).reshape(shape))
    return None


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any, bool, bool]]:
    """``(name, hint, has a default, keyword only)`` of each parameter; UserError naming one without a hint."""
    hints = typing.get_type_hints(function)
    found = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name not in hints:
            raise UserError(f"argument {parameter.name!r} has no type hint")
        found.append((parameter.name, hints[parameter.name], parameter.default is not parameter.empty,
                      parameter.kind == parameter.KEYWORD_ONLY))
    return found


def generated_calls(function: Callable[..., Any], count: int) -> list[tuple[list[Any], dict[str, Any], bool]]:
    """``(args, kwargs, with gradients)`` for ``function``, drawn from its type hints: up to ``count``
    draws, each in every memory layout of :data:`LAYOUTS`."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    parameters = _parameters(function)
    drawn: list[tuple[list[Any], dict[str, Any], bool]] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data: Any) -> None:
        shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3), label="shape")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, hint, has_default, keyword in parameters:
            if has_default and data.draw(st.booleans(), label=f"{name} default"):
                continue
            strategy = _strategy(hint, shape)
            if strategy is None:
                raise UserError(f"argument {name!r}: no strategy for the type {hint!r}")
            value = data.draw(strategy, label=name)
            if keyword or (has_default and kwargs):
                kwargs[name] = value
            else:
                args.append(value)
        drawn.append((args, kwargs, data.draw(st.booleans(), label="gradients")))

    draw()
    return [_in_layout(call, layout) for call in drawn for layout in LAYOUTS]


# --- comparing calls ----------------------------------------------------------------------


def _fingerprint(value: Any) -> Any:
    """What a call gave, comparable with ``==``: a tensor by dtype, shape, strides and bytes."""
    import torch

    if isinstance(value, torch.Tensor):
        flat = torch.empty(value.numel(), dtype=value.dtype)
        flat.copy_(value.detach().cpu().reshape(-1))
        return ("tensor", str(value.dtype), tuple(value.shape), tuple(value.stride()),
                hashlib.sha256(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"").hexdigest())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_fingerprint(item) for item in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple((repr(k), _fingerprint(v)) for k, v in value.items()))
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return (type(value).__name__, value)
    return ("object", type(value).__qualname__)


def _call(function: Callable[..., Any], call: tuple[list[Any], dict[str, Any], bool]) -> Any:
    """The fingerprint of one call on copies of its arguments: value or exception, then gradients."""
    import torch

    args, kwargs, gradients = copy.deepcopy(call)
    inputs = [value for value in [*args, *kwargs.values()]
              if isinstance(value, torch.Tensor) and value.is_floating_point()]
    if gradients:
        for tensor in inputs:
            tensor.requires_grad_(True)
    try:
        result = function(*args, **kwargs)
    except Exception as err:  # the exception's type is part of the behaviour compared
        return ("raised", type(err).__name__)
    outcome: tuple[Any, ...] = ("returned", _fingerprint(result))
    if gradients and isinstance(result, torch.Tensor) and result.grad_fn is not None:
        try:
            grads = torch.autograd.grad(result, inputs, torch.ones_like(result), allow_unused=True)
            outcome += (("gradients", tuple(_fingerprint(grad) for grad in grads)),)
        except Exception as err:
            outcome += (("backward raised", type(err).__name__),)
    return outcome


def _describe(call: tuple[list[Any], dict[str, Any], bool]) -> str:
    import torch

    def one(value: Any) -> str:
        if isinstance(value, torch.Tensor):
            layout = "contiguous" if value.is_contiguous() else f"strides {tuple(value.stride())}"
            return f"tensor{tuple(value.shape)} {layout}"
        return repr(value)

    args, kwargs, gradients = call
    shown = [one(value) for value in args] + [f"{name}={one(value)}" for name, value in kwargs.items()]
    return f"({', '.join(shown)})" + (" with gradients" if gradients else "")


def _compare(target: Target, site: Site, function: Callable[..., Any], count: int) -> dict[str, Any]:
    """In a forked child: the original's calls, then the mutant swapped in and the same calls."""
    calls = generated_calls(function, count)
    before = [_call(function, call) for call in calls]
    live.apply(str(target.path), target.source, site, [""])
    for call, original in zip(calls, before):
        mutant = _call(function, call)
        if mutant != original:
            return {"status": DIFFERS, "examples": len(calls),
                    "detail": f"{_describe(call)}: original {_summary(original)}, mutant {_summary(mutant)}"}
    return {"status": SAME, "examples": len(calls), "detail": f"{len(calls)} generated calls gave the same"}


def _summary(outcome: Any) -> str:
    if outcome[0] == "raised":
        return f"raised {outcome[1]}"
    value = outcome[1]
    text = f"returned {value[0]}" + (f" shape {value[2]} strides {value[3]}" if value[0] == "tensor" else "")
    if value[0] not in ("tensor", "tuple", "list", "mapping", "object"):
        text = f"returned {value[1]!r}"
    return text + ("".join(f", {part[0]}" for part in outcome[2:]))


# --- the audit ----------------------------------------------------------------------------


def _function(target: Target, site: Site) -> Callable[..., Any]:
    """The plain function that holds ``site`` (UserError saying why there is none to call)."""
    if site.at_import:
        raise UserError("the site runs at import")
    module = importlib.import_module(target.module)
    holder: Any = module
    for part in site.scope.split("."):
        holder = inspect.getattr_static(holder, part, None)
        if isinstance(holder, (staticmethod, classmethod)):
            holder = holder.__func__
        if holder is None:
            raise UserError(f"{site.scope} is not reachable from the module (a nested function)")
    if not isinstance(holder, types.FunctionType):
        raise UserError(f"{site.scope} is a {type(holder).__name__}, not a plain function "
                        "(a Triton kernel is checked by its falsifiers)")
    return holder


def audit_entry(entry: Equivalent, root: Path, examples: int) -> Finding:
    """One entry: stale, not checked (why), the same on every generated call, or the first call that differs."""
    try:
        target, site = find_site(entry.key, root)
    except UserError as err:
        return Finding(entry.key, NOT_CHECKED, f"stale: {err}")
    if site.change != entry.change:
        return Finding(entry.key, NOT_CHECKED, f"stale: listed as {entry.change!r}, the mutant is {site.change!r}")
    try:
        function = _function(target, site)
        _parameters(function)
    except (UserError, NameError, TypeError) as err:
        return Finding(entry.key, NOT_CHECKED, str(err))
    outcome = run_forked(lambda _: _compare(target, site, function, examples), AUDIT_TIMEOUT_S, startup=False)
    status = outcome.get("status")
    if status in (SAME, DIFFERS):
        return Finding(entry.key, status, outcome["detail"], outcome.get("examples", 0))
    return Finding(entry.key, NOT_CHECKED, f"the audit run failed: {outcome.get('detail', status)}")


def audit_equivalents(entries: Mapping[str, Equivalent], root: Path, examples: int) -> list[Finding]:
    """Every entry audited, in the file's order."""
    return [audit_entry(entry, root, examples) for entry in entries.values()]


def format_audit(findings: list[Finding]) -> str:
    """Those that differ first, then those not checked, then a count of each outcome."""
    lines = []
    for outcome in (DIFFERS, NOT_CHECKED, SAME):
        chosen = [finding for finding in findings if finding.outcome == outcome]
        if chosen and outcome != SAME:
            lines += [f"{outcome}:"] + [f"  {f.key}: {f.detail}" for f in chosen] + [""]
    counts = {outcome: sum(f.outcome == outcome for f in findings) for outcome in (DIFFERS, SAME, NOT_CHECKED)}
    lines.append(f"{len(findings)} equivalents audited: {counts[DIFFERS]} differ, {counts[SAME]} the same on "
                 f"every generated call, {counts[NOT_CHECKED]} not checked")
    return "\n".join(lines)

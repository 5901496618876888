"""Evaluating a check on one input: bind the implementations, run, judge.

:func:`bind` resolves the ``module:name`` bindings of a :class:`~pv.contracts.checkspec.CheckSpec`
(implementations, constants, the required exception) when a check runs, and only
inside the allowed module prefixes: the project's ``[tool.pv] modules`` (or
``$PV_MODULES``), plus ``--pv-allow-module``, ``pv check --allow-module`` or
``$PV_ALLOW_MODULES``; so a contract cannot bind ``os:system``. A bare name in
``raises.error`` is looked up in the project's ``[tool.pv] errors`` module, then
in the builtins. Inside them a binding
reaches only what the project declares bindable (see :func:`bindable`): a name a module
lists in its ``__pv_bindable__``, or a function marked with a true ``__pv_bindable__``
attribute; where neither the module nor a package above it declares ``__pv_bindable__``,
any public function, class or plain value defined in that module (never a re-export).
:class:`Property` judges one input: the
precondition, the call, the required error region, the NaN policy, the property.
All engines use it, and so do replays.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pv._util import config as pv_config
from pv._util.errors import PvError
from pv.contracts import expr
from pv.contracts.checkspec import CheckSpec, parse_binding
from pv.contracts.expr_helpers import has_non_finite

ALLOW_ENV = "PV_ALLOW_MODULES"

PASS, REJECT, FAIL, ERROR = "pass", "reject", "fail", "error"


class BindingError(PvError, RuntimeError):
    """A binding that cannot be resolved or is not allowed."""


def allowed_modules(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The allowed module prefixes: the project's, ``$PV_ALLOW_MODULES`` (comma-separated), ``extra``.

    Activates the project's configuration, so its folder is on ``sys.path``.
    """
    from_env = [m.strip() for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()]
    return tuple(dict.fromkeys([*pv_config.current().modules, *from_env, *extra]))


def _is_allowed(module: str, allowed: Iterable[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


#: The module attribute listing the names a contract may bind, and the marker attribute of a function.
BINDABLE = "__pv_bindable__"


def _declares_bindable(module_name: str) -> bool:
    """Whether ``module_name`` or a package above it declares :data:`BINDABLE` (only what is marked binds)."""
    parts = module_name.split(".")
    for end in range(len(parts), 0, -1):
        found = sys.modules.get(".".join(parts[:end]))
        if found is not None and BINDABLE in vars(found):
            return True
    return False


def bindable(module: Any, name: str) -> str | None:
    """Why ``module.name`` may not be bound, or None when it may.

    Where the project declares what is bindable (:data:`BINDABLE` in the module or a
    package above it), the name must be listed in the module's own ``__pv_bindable__``,
    or be a function defined there whose ``__pv_bindable__`` attribute is true. Elsewhere
    it must be a function or class defined in the module itself, or a plain value.
    """
    value = getattr(module, name)
    defined_here = getattr(value, "__module__", None) == module.__name__
    if _declares_bindable(module.__name__):
        listed = vars(module).get(BINDABLE, ())
        if isinstance(listed, (list, tuple, set, frozenset)) and name in listed:
            return None
        if defined_here and getattr(value, BINDABLE, False) is True:
            return None
        return f"{module.__name__} does not declare {name!r} bindable (its {BINDABLE} list or marker)"
    if _plain_constant(value) or (defined_here and (inspect.isfunction(value) or inspect.isclass(value))):
        return None
    if callable(value):
        origin = getattr(value, "__module__", None) or "elsewhere"
        return f"{name!r} is not a function defined in {module.__name__} (it comes from {origin})"
    return f"{name!r} is a {type(value).__name__}, neither a function defined in {module.__name__} nor a plain value"


def resolve(binding: str, allowed: Iterable[str], *, check_bindable: bool = True) -> Any:
    """The object named by ``module:name``, importing the module if it is allowed and
    refusing a name the module does not make bindable (see :func:`bindable`; an exception
    class, which is only compared with, skips that with ``check_bindable=False``)."""
    parsed = parse_binding(binding)
    if parsed is None:
        raise BindingError(f"{binding!r} is not 'module:name'")
    module_name, name = parsed
    allowed = tuple(allowed)
    if not _is_allowed(module_name, allowed):
        raise BindingError(
            f"{binding!r}: module {module_name!r} is outside the allowed modules ({', '.join(allowed) or 'none'});"
            f" list its package in [tool.pv] modules of the project's pyproject.toml"
            f" (or pass --allow-module to pv check, --pv-allow-module to pytest, or set ${ALLOW_ENV})"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BindingError(f"{binding!r}: cannot import {module_name}: {err}") from None
    if name.startswith("_") or not hasattr(module, name):
        raise BindingError(f"{binding!r}: {module_name} has no public attribute {name!r}")
    refused = bindable(module, name) if check_bindable else None
    if refused is not None:
        raise BindingError(f"{binding!r}: {refused}")
    return getattr(module, name)


def _resolve_error(name: str, allowed: Iterable[str]) -> type[BaseException]:
    if ":" in name:
        found = resolve(name, allowed, check_bindable=False)
    else:
        found = None
        errors_module = pv_config.current().errors
        if errors_module is not None:
            try:
                found = getattr(importlib.import_module(errors_module), name, None)
            except ImportError as err:
                raise BindingError(f"[tool.pv] errors: cannot import {errors_module}: {err}") from None
        found = found or getattr(builtins, name, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        places = f"{errors_module} and the builtins" if errors_module else "the builtins ([tool.pv] errors is not set)"
        raise BindingError(f"raises.error {name!r} is not an exception class (looked in {places})")
    return found


def _plain_constant(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain_constant(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class Outcome:
    """The judgement of one input: ``pass``, ``reject`` (assume false), ``fail`` or ``error``."""

    status: str
    message: str = ""
    result: Any = None
    derived: dict[str, Any] | None = None


@dataclass(frozen=True)
class Bindings:
    """What a check's names resolved to: implementation functions, constants, the expected exception."""

    implementations: dict[str, Any]
    constants: dict[str, Any]
    error: type[BaseException] | None


def bind(spec: CheckSpec, allowed: Iterable[str]) -> Bindings:
    """Resolve the implementations, constants and required exception of ``spec``."""
    allowed = tuple(allowed)
    implementations = {}
    for name, binding in spec.calls.items():
        function = resolve(binding, allowed)
        if not callable(function):
            raise BindingError(f"implementation {binding!r} is not callable")
        implementations[name] = function
    constants = {}
    for name, binding in spec.constants.items():
        value = resolve(binding, allowed)
        if not _plain_constant(value):
            raise BindingError(f"constant {binding!r} is a {type(value).__name__}, not a plain value")
        constants[name] = value
    error = _resolve_error(spec.raises.error, allowed) if spec.raises else None
    return Bindings(implementations, constants, error)


def _describe_exception(err: BaseException) -> str:
    return _short(f"{type(err).__name__}: {err}")


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Property:
    """One check, bound: ``evaluate(inputs)`` judges a single input."""

    def __init__(self, spec: CheckSpec, bindings: Bindings, passthrough: tuple[type[BaseException], ...] = ()):
        self.spec = spec
        self.bindings = bindings
        self.passthrough = passthrough

    def _env(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        env = {**inputs, **self.bindings.constants, **self.bindings.implementations}
        for name, compiled in self.spec.derived.items():
            env[name] = self._value(compiled, env, f"let {name}")
        return env

    def _value(self, compiled: expr.CompiledExpression, env: Mapping[str, Any], what: str) -> Any:
        try:
            return compiled(env)
        except self.passthrough:
            raise
        except Exception as err:  # the check broke, not the implementation
            raise _CheckBroke(f"evaluating {what} raised {_describe_exception(err)}") from None

    def _truth(self, compiled: expr.CompiledExpression, env: Mapping[str, Any], what: str) -> bool:
        value = self._value(compiled, env, what)
        try:
            return bool(value)
        except self.passthrough:
            raise
        except Exception as err:
            raise _CheckBroke(f"{what} is not true or false ({_describe_exception(err)}); use all() or allclose()") from None

    def precondition(self, inputs: Mapping[str, Any]) -> Outcome:
        """``pass`` when ``assume`` holds (or there is none), ``reject`` when not, ``error`` if it broke."""
        try:
            if self.spec.assume is None or self._truth(self.spec.assume, self._env(inputs), "assume"):
                return Outcome(PASS)
            return Outcome(REJECT)
        except _CheckBroke as err:
            return Outcome(ERROR, str(err))

    def evaluate(self, inputs: Mapping[str, Any]) -> Outcome:
        """Judge one input: precondition, call, error region, NaN policy, property."""
        before = self.precondition(inputs)
        if before.status != PASS:
            return before
        try:
            env = self._env(inputs)
            outcome = self._judge(env)
        except _CheckBroke as err:
            return Outcome(ERROR, str(err))
        if outcome.status == PASS or not self.spec.derived:
            return outcome
        return dataclasses.replace(outcome, derived={name: env[name] for name in self.spec.derived})

    def _judge(self, env: dict[str, Any]) -> Outcome:
        spec, raises = self.spec, self.spec.raises
        in_region = raises is not None and (raises.when is None or self._truth(raises.when, env, "raises.when"))
        if spec.result is None:
            return self._expect(env)
        try:
            result = spec.result(env)
        except self.passthrough:
            raise
        except Exception as err:
            if self.bindings.error is not None and isinstance(err, self.bindings.error):
                if in_region:
                    return Outcome(PASS)
                return Outcome(FAIL, f"raised {_describe_exception(err)} outside the error region", _describe_exception(err))
            return Outcome(FAIL, f"raised {_describe_exception(err)}", _describe_exception(err))
        if in_region:
            assert raises is not None
            return Outcome(FAIL, f"returned {_short(result)} where {raises.error} was required", result)
        if spec.nan_policy == "forbid" and has_non_finite(result):
            return Outcome(FAIL, "result holds NaN or Inf (nan_policy: forbid)", result)
        return self._expect({**env, expr.RESULT_NAME: result}, result)

    def _expect(self, env: dict[str, Any], result: Any = None) -> Outcome:
        if self.spec.expect is None or self._truth(self.spec.expect, env, "expect"):
            return Outcome(PASS, result=result)
        return Outcome(FAIL, "expect is false", result)


class _CheckBroke(Exception):
    """An expression of the check itself raised: the verdict is ``error``, not ``refuted``."""

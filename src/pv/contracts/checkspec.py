"""Reading an obligation's ``check:`` block: what it means and everything wrong with it.

:func:`parse_check` turns the block (plus the ``implementation`` strings of the
equations it calls) into a :class:`CheckSpec` with compiled expressions, or a
list of :class:`Issue` (each with the key path below ``check`` and the kind of
problem, which the validate rules map to a rule id). Nothing is imported from
``impl/`` here: implementations are resolved when a check runs.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pv.contracts import expr, expr_helpers
from pv.contracts.domains import Domain, DomainError, parse_domain, product_size
from pv.contracts.engines import ENGINE_NAMES, EXHAUSTIVE_CAP, engine_unfit, select_engines
CHECK_KEYS = (
    "given", "call", "constants", "let", "assume", "result", "expect", "raises",
    "engine", "tolerance", "nan_policy", "budget",
)
#: Issue kind for a problem of the block itself (not of one expression's syntax).
STRUCTURE = "check"
_BINDING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_EXCEPTION_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:)?[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Issue:
    """One problem of a check block: ``keys`` below ``check``, ``kind`` an :mod:`pv.contracts.expr` kind or ``check``."""

    keys: tuple
    kind: str
    message: str


#: Largest tolerance of each kind (NaN and infinities are refused: they would make every value close).
MAX_TOLERANCE = {"abs": 1e300, "rel": 1e300, "ulp": 1_000_000}
#: Largest ``budget.examples`` and ``budget.seconds`` (a day).
MAX_BUDGET_EXAMPLES = 100_000_000
MAX_BUDGET_SECONDS = 86_400


@dataclass(frozen=True)
class Budget:
    """``examples``: cases (Hypothesis examples, exhaustive cap, CrossHair iterations); ``seconds`` per condition."""

    examples: int | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"examples": self.examples, "seconds": self.seconds}


@dataclass(frozen=True)
class Raises:
    """The implementation must raise ``error`` exactly when ``when`` holds (always, if no ``when``)."""

    error: str
    when: expr.CompiledExpression | None


@dataclass
class CheckSpec:
    """A parsed, compiled check: domains, expressions, bindings by name, engines, budgets."""

    given: dict[str, Domain]
    calls: dict[str, str]
    constants: dict[str, str]
    derived: dict[str, expr.CompiledExpression]
    assume: expr.CompiledExpression | None
    result: expr.CompiledExpression | None
    expect: expr.CompiledExpression | None
    raises: Raises | None
    engines: tuple[str, ...]
    tolerance: expr_helpers.Tolerance | None
    nan_policy: str
    budget: Budget
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def plain(self) -> bool:
        return all(domain.plain for domain in self.given.values())

    def size(self) -> int | None:
        return product_size(self.given)


def parse_binding(text: Any) -> tuple[str, str] | None:
    """``("module.path", "name")`` for ``"module.path:name"``, or ``None`` if malformed."""
    if not isinstance(text, str) or not _BINDING.match(text):
        return None
    module, _, name = text.partition(":")
    return module, name


def is_identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def _reserved_reason(name: str) -> str | None:
    if name.startswith("_"):
        return "starts with '_'"
    if name in expr_helpers.HELPERS or name in expr_helpers.CONSTANTS:
        return "is a helper of the expression language"
    if name == expr.RESULT_NAME:
        return "is the name of the implementation's result"
    return None


class _Reader:
    """Collects issues while reading one check block."""

    def __init__(self, block: Mapping, implementations: Mapping[str, Any], compile_expressions: bool) -> None:
        self.block = block
        self.implementations = implementations
        self.compile_expressions = compile_expressions
        self.issues: list[Issue] = []

    def issue(self, keys: tuple, message: str, kind: str = STRUCTURE) -> None:
        self.issues.append(Issue(keys, kind, message))

    def names(self, key: str) -> list[str]:
        value = self.block.get(key)
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.issue((key,), f"{key} must be a name or a list of names")
            return []
        return items

    def given(self) -> dict[str, Domain]:
        spec = self.block.get("given")
        if not isinstance(spec, Mapping) or not spec:
            self.issue(("given",), "given must map each input name to its domain")
            return {}
        domains: dict[str, Domain] = {}
        for name, domain_spec in spec.items():
            if not is_identifier(name) or _reserved_reason(name):
                why = _reserved_reason(name) if is_identifier(name) else "is not a Python identifier"
                self.issue(("given", name), f"input name {name!r} {why}")
                continue
            try:
                domains[name] = parse_domain(domain_spec)
            except DomainError as err:
                self.issue(("given", name) + err.keys, f"input {name!r}: {err}")
        return domains

    def calls(self, given: Mapping[str, Domain]) -> dict[str, str]:
        calls: dict[str, str] = {}
        for index, name in enumerate(self.names("call")):
            keys = ("call",) if isinstance(self.block.get("call"), str) else ("call", index)
            if name not in self.implementations:
                self.issue(keys, f"call names {name!r}, which is not an equation of this contract")
            elif not is_identifier(name) or _reserved_reason(name) or name in given:
                self.issue(keys, f"equation {name!r} cannot be bound: its name is not usable in expressions")
            elif parse_binding(self.implementations[name]) is None:
                self.issue(keys, f"equation {name!r} has no valid 'implementation: module:function'")
            else:
                calls[name] = self.implementations[name]
        return calls

    def constants(self, taken: set[str]) -> dict[str, str]:
        spec = self.block.get("constants", {})
        if not isinstance(spec, Mapping):
            self.issue(("constants",), "constants must map names to 'module:NAME' bindings")
            return {}
        constants: dict[str, str] = {}
        for name, binding in spec.items():
            if not is_identifier(name) or _reserved_reason(name) or name in taken:
                self.issue(("constants", name), f"constant name {name!r} is not usable (reserved or taken)")
            elif parse_binding(binding) is None:
                self.issue(("constants", name), f"constant {name!r} must be bound as 'module:NAME'")
            else:
                constants[name] = binding
        return constants

    def derived(
        self, values: set[str], callables: set[str], helpers: dict
    ) -> dict[str, expr.CompiledExpression | None]:
        """``let:``: names computed in order from the inputs, constants and earlier names
        (each name maps to its compiled expression, ``None`` when not compiling)."""
        spec = self.block.get("let", {})
        if not isinstance(spec, Mapping):
            self.issue(("let",), "let must map names to expressions")
            return {}
        derived: dict[str, expr.CompiledExpression | None] = {}
        for name in spec:
            if not is_identifier(name) or _reserved_reason(name) or name in values or name in callables:
                self.issue(("let", name), f"let name {name!r} is not usable (reserved or taken)")
                continue
            derived[name] = self.expression(("let", name), values, callables, helpers)
            values = values | {name}
        return derived

    def expression(
        self, keys: tuple, names: set[str], callables: set[str], helpers: dict
    ) -> expr.CompiledExpression | None:
        value: Any = self.block
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return None
        problems = expr.check_expression(value, names, callables)
        for problem in problems:
            where = f" (line {problem.line}, column {problem.col})" if problem.line > 1 else ""
            where = where or (f" (column {problem.col})" if problem.col > 1 else "")
            self.issue(keys, f"{'.'.join(map(str, keys))}: {problem.message}{where}", problem.kind)
        if problems or not self.compile_expressions:
            return None
        return expr.compile_expression(value, names, callables, helpers=helpers, label=".".join(keys))

    def raises(self) -> tuple[str | None, bool]:
        spec = self.block.get("raises")
        if spec is None:
            return None, False
        if not isinstance(spec, Mapping) or "error" not in spec or set(spec) - {"error", "when"}:
            self.issue(("raises",), "raises must be {error: ExceptionName, when: expression}")
            return None, False
        if not isinstance(spec["error"], str) or not _EXCEPTION_NAME.match(spec["error"]):
            self.issue(("raises", "error"), "raises.error must be an exception name or 'module:Name'")
            return None, False
        return spec["error"], "when" in spec

    def tolerance(self) -> expr_helpers.Tolerance | None:
        spec = self.block.get("tolerance")
        if spec is None:
            return None
        if not isinstance(spec, Mapping) or not spec or set(spec) - {"abs", "rel", "ulp"}:
            self.issue(("tolerance",), "tolerance must be a mapping of abs, rel and/or ulp")
            return None
        for key, value in spec.items():
            valid_type = int if key == "ulp" else (int, float)
            if isinstance(value, bool) or not isinstance(value, valid_type) or not 0 <= value <= MAX_TOLERANCE[key]:
                self.issue(("tolerance", key), f"tolerance.{key} must be a finite number from 0 to {MAX_TOLERANCE[key]}")
                return None
        return expr_helpers.Tolerance(float(spec.get("abs", 0.0)), float(spec.get("rel", 0.0)), spec.get("ulp", 0))

    def budget(self) -> Budget:
        spec = self.block.get("budget", {})
        if not isinstance(spec, Mapping) or set(spec) - {"examples", "seconds"}:
            self.issue(("budget",), "budget must be a mapping of examples and/or seconds")
            return Budget()
        examples, seconds = spec.get("examples"), spec.get("seconds")
        if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int)
                                     or not 1 <= examples <= MAX_BUDGET_EXAMPLES):
            self.issue(("budget", "examples"), f"budget.examples must be an integer from 1 to {MAX_BUDGET_EXAMPLES}")
            examples = None
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds <= MAX_BUDGET_SECONDS):
            self.issue(("budget", "seconds"), f"budget.seconds must be a number > 0 and at most {MAX_BUDGET_SECONDS}")
            seconds = None
        return Budget(examples, None if seconds is None else float(seconds))

    def engines(self, given: Mapping[str, Domain], cap: int) -> tuple[str, ...]:
        chosen = self.names("engine")
        for name in chosen:
            reason = engine_unfit(name, given, cap)
            if reason:
                self.issue(("engine",), reason)
                if name not in ENGINE_NAMES:
                    return ()
        return tuple(dict.fromkeys(chosen)) or select_engines(given, cap)


def check_issues(block: Any, implementations: Mapping[str, Any]) -> list[Issue]:
    """Everything wrong with one ``check:`` block, without compiling its expressions."""
    return _read(block, implementations, compile_expressions=False)[1]


def parse_check(block: Any, implementations: Mapping[str, Any]) -> tuple[CheckSpec | None, list[Issue]]:
    """Read one ``check:`` block; ``implementations`` maps equation names to their
    ``implementation`` value (``None`` where an equation has none)."""
    return _read(block, implementations, compile_expressions=True)


def _read(
    block: Any, implementations: Mapping[str, Any], compile_expressions: bool
) -> tuple[CheckSpec | None, list[Issue]]:
    if not isinstance(block, Mapping):
        return None, [Issue((), STRUCTURE, "check must be a mapping")]
    reader = _Reader(block, implementations, compile_expressions)
    for key in block:
        if key not in CHECK_KEYS:
            reader.issue((key,), f"unknown key {key!r} in check (allowed: {', '.join(CHECK_KEYS)})")
    given = reader.given()
    calls = reader.calls(given)
    constants = reader.constants(set(given) | set(calls))
    error, has_when = reader.raises()
    tolerance = reader.tolerance()
    nan_policy = block.get("nan_policy", "forbid")
    if nan_policy not in expr_helpers.NAN_POLICIES:
        reader.issue(("nan_policy",), f"nan_policy must be one of {', '.join(expr_helpers.NAN_POLICIES)}")
    budget = reader.budget()
    engines = reader.engines(given, budget.examples or EXHAUSTIVE_CAP)
    if "expect" not in block and "raises" not in block:
        reader.issue((), "check needs 'expect' (the property) or 'raises' (the required error)")
    if "raises" in block and "result" not in block:
        reader.issue(("raises",), "raises needs 'result' (the call that must raise)")
    lets = block.get("let") if isinstance(block.get("let"), Mapping) else {}
    texts = {f"let {name}": text for name, text in lets.items() if isinstance(text, str)}
    texts.update({key: block[key] for key in ("assume", "result", "expect") if isinstance(block.get(key), str)})
    if has_when and isinstance(block["raises"].get("when"), str):
        texts["raises.when"] = block["raises"]["when"]
    uses_closeness = any(re.search(r"\b(isclose|allclose)\s*\(", text) for text in texts.values())
    if uses_closeness and tolerance is None:
        reader.issue((), "isclose/allclose are used but the check declares no tolerance")

    helpers = expr_helpers.namespace(tolerance, nan_policy if nan_policy in expr_helpers.NAN_POLICIES else "forbid")
    callables = set(calls)
    derived = reader.derived(set(given) | set(constants), callables, helpers)
    values = set(given) | set(constants) | set(derived)
    assume = reader.expression(("assume",), values, callables, helpers)
    result = reader.expression(("result",), values, callables, helpers)
    with_result = values | ({expr.RESULT_NAME} if "result" in block else set())
    expect = reader.expression(("expect",), with_result, callables, helpers)
    when = reader.expression(("raises", "when"), values, callables, helpers) if has_when else None
    if reader.issues or not compile_expressions:
        return None, reader.issues
    spec = CheckSpec(
        given=given, calls=calls, constants=constants, derived=derived,  # type: ignore[arg-type]
        assume=assume, result=result, expect=expect,
        raises=Raises(error, when) if error else None, engines=engines, tolerance=tolerance,
        nan_policy=nan_policy, budget=budget, texts=texts,
    )
    return spec, []

def equation_implementations(data: Mapping[str, Any]) -> dict[str, Any]:
    """Equation name -> its ``implementation`` value (``None`` where it has none)."""
    equations = data.get("equations")
    if not isinstance(equations, Mapping):
        return {}
    return {
        str(name): (body.get("implementation") if isinstance(body, Mapping) else None)
        for name, body in equations.items()
    }


def is_contract(data: Any) -> bool:
    """A loaded YAML is a contract for the compiler if it has a list of ``proof_obligations``."""
    return isinstance(data, Mapping) and isinstance(data.get("proof_obligations"), list)

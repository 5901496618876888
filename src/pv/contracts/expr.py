"""The contract expression language: a whitelisted subset of Python expressions.

Contract text is parsed with :mod:`ast` and checked node by node against a
whitelist (see ``docs/contract-checks.md``): comparisons, arithmetic, boolean
logic, conditional expressions, comprehensions, subscripts and slices, calls to
the fixed helper vocabulary of :mod:`pv.contracts.expr_helpers` and to the implementations
a check binds, and names in scope. Everything else (attribute walks, dunder
names, lambdas, walrus, starred arguments, f-strings, calls through attributes)
is a :class:`Problem`, reported at validate time as a finding.

An accepted tree is rewritten (every operator, comparison and subscript goes through
a guard, and every guard and helper charges one meter by the size of what it reads
and builds, with a wall-clock deadline per evaluation) and compiled into a function
whose globals hold only the helpers and, of the builtins, only the import hook that
C extensions need.
Contract text is never handed to ``eval`` as written.

This module imports neither torch, Hypothesis nor CrossHair.
"""

from __future__ import annotations

import ast
import builtins
import functools
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pv._util.errors import InvalidValue
from pv.contracts import expr_helpers

#: Longest expression accepted, in characters (deep nesting is also refused by the parser).
MAX_EXPRESSION_LENGTH = 2000
#: Longest string literal accepted.
MAX_STRING_LITERAL = 200
#: Attributes that may be read (never called): shape facts of tensors.
ALLOWED_ATTRIBUTES = frozenset({"shape", "ndim"})
#: The name bound to the implementation's return value in ``expect``.
RESULT_NAME = "result"

_BINARY_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARY_OPERATORS = (ast.Not, ast.USub, ast.UAdd)
_COMPARISONS = (
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
)
_CONSTANT_TYPES = (bool, int, float, str, type(None))

#: Problem kinds; the validate rules map each to a rule id.
SYNTAX = "syntax"
CONSTRUCT = "construct"
ATTRIBUTE = "attribute"
CALL = "call"
NAME = "name"


@dataclass(frozen=True)
class Problem:
    """Why an expression is refused; ``line``/``col`` are 1-based within the expression text."""

    kind: str
    message: str
    line: int = 1
    col: int = 1


class ExpressionError(InvalidValue):
    """An expression that is not in the language; carries every problem found."""

    def __init__(self, text: str, problems: list[Problem]) -> None:
        self.text = text
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def _position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1


def _is_reserved(name: str) -> bool:
    return name.startswith("_")


class _Validator:
    """Walks a parsed expression and records every construct outside the language."""

    def __init__(self, names: Collection[str], callables: Collection[str]) -> None:
        self.names = frozenset(names)
        self.callables = frozenset(callables)
        self.problems: list[Problem] = []

    def refuse(self, node: ast.AST, kind: str, message: str) -> None:
        line, col = _position(node)
        self.problems.append(Problem(kind, message, line, col))

    def visit(self, node: ast.AST, local: frozenset[str]) -> None:
        handler = getattr(self, "visit_" + type(node).__name__, None)
        if handler is None:
            self.refuse(node, CONSTRUCT, f"{_describe(node)} is not allowed in contract expressions")
            return
        handler(node, local)

    def visit_all(self, nodes: list, local: frozenset[str]) -> None:
        for node in nodes:
            self.visit(node, local)

    def visit_Expression(self, node: ast.Expression, local: frozenset[str]) -> None:
        self.visit(node.body, local)

    def visit_Constant(self, node: ast.Constant, local: frozenset[str]) -> None:
        if not isinstance(node.value, _CONSTANT_TYPES):
            self.refuse(node, CONSTRUCT, f"literal of type {type(node.value).__name__} is not allowed")
        elif isinstance(node.value, str) and len(node.value) > MAX_STRING_LITERAL:
            self.refuse(node, CONSTRUCT, f"string literal longer than {MAX_STRING_LITERAL} characters")

    def visit_Name(self, node: ast.Name, local: frozenset[str]) -> None:
        name = node.id
        if _is_reserved(name):
            self.refuse(node, NAME, f"name {name!r} is reserved (names starting with '_' are not allowed)")
        elif name in self.callables:
            self.refuse(node, NAME, f"{name!r} is an implementation: call it, do not use it as a value")
        elif name in expr_helpers.HELPERS:
            self.refuse(node, NAME, f"{name!r} is a helper function: call it, do not use it as a value")
        elif not (name in local or name in self.names or name in expr_helpers.CONSTANTS):
            self.refuse(node, NAME, f"unknown name {name!r}; in scope: {_scope_text(self.names | local)}")

    def visit_BoolOp(self, node: ast.BoolOp, local: frozenset[str]) -> None:
        self.visit_all(node.values, local)

    def visit_BinOp(self, node: ast.BinOp, local: frozenset[str]) -> None:
        if not isinstance(node.op, _BINARY_OPERATORS):
            self.refuse(node, CONSTRUCT, f"operator {type(node.op).__name__} is not allowed")
        self.visit(node.left, local)
        self.visit(node.right, local)

    def visit_UnaryOp(self, node: ast.UnaryOp, local: frozenset[str]) -> None:
        if not isinstance(node.op, _UNARY_OPERATORS):
            self.refuse(node, CONSTRUCT, f"operator {type(node.op).__name__} is not allowed")
        self.visit(node.operand, local)

    def visit_Compare(self, node: ast.Compare, local: frozenset[str]) -> None:
        for op in node.ops:
            if not isinstance(op, _COMPARISONS):
                self.refuse(node, CONSTRUCT, f"comparison {type(op).__name__} is not allowed")
        self.visit(node.left, local)
        self.visit_all(node.comparators, local)

    def visit_IfExp(self, node: ast.IfExp, local: frozenset[str]) -> None:
        self.visit_all([node.test, node.body, node.orelse], local)

    def visit_Tuple(self, node: ast.Tuple, local: frozenset[str]) -> None:
        self.visit_all(node.elts, local)

    visit_List = visit_Tuple
    visit_Set = visit_Tuple

    def visit_Subscript(self, node: ast.Subscript, local: frozenset[str]) -> None:
        self.visit(node.value, local)
        self.visit(node.slice, local)

    def visit_Slice(self, node: ast.Slice, local: frozenset[str]) -> None:
        self.visit_all([part for part in (node.lower, node.upper, node.step) if part is not None], local)

    def visit_Attribute(self, node: ast.Attribute, local: frozenset[str]) -> None:
        if node.attr.startswith("_"):
            self.refuse(node, ATTRIBUTE, f"attribute {node.attr!r} is not allowed (no '_' attributes)")
        elif node.attr not in ALLOWED_ATTRIBUTES:
            allowed = ", ".join(sorted(ALLOWED_ATTRIBUTES))
            self.refuse(node, ATTRIBUTE, f"attribute {node.attr!r} is not allowed (allowed: {allowed})")
        self.visit(node.value, local)

    def visit_Call(self, node: ast.Call, local: frozenset[str]) -> None:
        func = node.func
        if not isinstance(func, ast.Name):
            self.refuse(
                node, CALL,
                f"only helpers and bound implementations can be called, not {ast.unparse(func)!r}",
            )
            self.visit(func, local)
        elif func.id in expr_helpers.HELPERS:
            self._check_helper_call(node, expr_helpers.HELPERS[func.id])
        elif func.id not in self.callables:
            bound = ", ".join(sorted(self.callables)) or "none"
            self.refuse(
                node, CALL,
                f"call to {func.id!r} is outside the vocabulary (helpers: see docs/contract-checks.md;"
                f" bound implementations: {bound})",
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.refuse(arg, CONSTRUCT, "starred arguments are not allowed")
            else:
                self.visit(arg, local)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.refuse(keyword.value, CONSTRUCT, "'**' arguments are not allowed")
            elif _is_reserved(keyword.arg):
                self.refuse(keyword.value, NAME, f"keyword {keyword.arg!r} is reserved")
            else:
                self.visit(keyword.value, local)

    def _check_helper_call(self, node: ast.Call, helper: expr_helpers.Helper) -> None:
        name = node.func.id  # type: ignore[attr-defined]
        count = len(node.args)
        if not helper.min_args <= count <= helper.max_args:
            expected = (
                str(helper.min_args) if helper.min_args == helper.max_args
                else f"{helper.min_args} to {helper.max_args}"
            )
            self.refuse(node, CALL, f"{name}() takes {expected} positional arguments, got {count}")
        for keyword in node.keywords:
            if keyword.arg is not None and keyword.arg not in helper.keywords:
                allowed = ", ".join(helper.keywords) or "none"
                self.refuse(node, CALL, f"{name}() has no keyword {keyword.arg!r} (keywords: {allowed})")

    def _visit_comprehension(self, node: Any, elements: list, local: frozenset[str]) -> None:
        scope = local
        for generator in node.generators:
            if generator.is_async:
                self.refuse(node, CONSTRUCT, "async comprehensions are not allowed")
            self.visit(generator.iter, scope)
            scope = scope | self._bind_target(generator.target)
            self.visit_all(generator.ifs, scope)
        self.visit_all(elements, scope)

    def _bind_target(self, target: ast.AST) -> frozenset[str]:
        if isinstance(target, ast.Name):
            reserved = (
                _is_reserved(target.id) or target.id in expr_helpers.HELPERS
                or target.id in self.callables or target.id in expr_helpers.CONSTANTS
            )
            if reserved:
                self.refuse(target, NAME, f"comprehension variable {target.id!r} shadows a reserved name")
                return frozenset()
            return frozenset({target.id})
        if isinstance(target, ast.Tuple):
            bound: frozenset[str] = frozenset()
            for element in target.elts:
                bound |= self._bind_target(element)
            return bound
        self.refuse(target, CONSTRUCT, "comprehension targets must be names or tuples of names")
        return frozenset()

    def visit_ListComp(self, node: ast.ListComp, local: frozenset[str]) -> None:
        self._visit_comprehension(node, [node.elt], local)

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda", "NamedExpr": "':=' (walrus)", "JoinedStr": "an f-string",
        "FormattedValue": "an f-string", "Await": "await", "Yield": "yield", "YieldFrom": "yield",
        "Dict": "a dict literal", "DictComp": "a dict comprehension", "Starred": "'*' unpacking",
    }
    return names.get(type(node).__name__, type(node).__name__)


def _scope_text(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "nothing"


def parse_expression(text: str) -> tuple[ast.Expression | None, list[Problem]]:
    """Parse ``text`` as one Python expression; problems are syntax problems."""
    if not isinstance(text, str) or not text.strip():
        return None, [Problem(SYNTAX, "expression is empty or not a string")]
    if len(text) > MAX_EXPRESSION_LENGTH:
        return None, [Problem(SYNTAX, f"expression longer than {MAX_EXPRESSION_LENGTH} characters")]
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        return None, [Problem(SYNTAX, f"not a Python expression: {err.msg}", err.lineno or 1, err.offset or 1)]
    except (ValueError, RecursionError, MemoryError) as err:
        return None, [Problem(SYNTAX, f"expression cannot be parsed: {type(err).__name__}")]
    return tree, []


def check_expression(
    text: str, names: Collection[str], callables: Collection[str] = ()
) -> list[Problem]:
    """Every reason ``text`` is not in the language, given the value ``names`` and the
    bound implementation ``callables`` in scope (helpers are always in scope)."""
    tree, problems = parse_expression(text)
    if tree is None:
        return problems
    validator = _Validator(names, callables)
    try:
        validator.visit(tree, frozenset())
    except RecursionError:
        return [Problem(SYNTAX, "expression is nested too deeply")]
    return validator.problems


class _Guard(ast.NodeTransformer):
    """Routes every operator, comparison and subscript through the guarded functions of
    :mod:`pv.contracts.expr_helpers` (which the evaluation's meter charges), and every
    comprehension's iterable through the meter, one unit a step."""

    GUARDS = {
        ast.Pow: "_pv_pow", ast.Mult: "_pv_mul", ast.Add: "_pv_add", ast.Sub: "_pv_sub",
        ast.Div: "_pv_div", ast.FloorDiv: "_pv_floordiv", ast.Mod: "_pv_mod",
    }
    SYMBOLS = {
        ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
    }

    @staticmethod
    def _call(name: str, args: list[ast.expr], like: ast.AST) -> ast.AST:
        return ast.copy_location(ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[]), like)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        return self._call(self.GUARDS[type(node.op)], [node.left, node.right], node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        symbols = [ast.Constant(self.SYMBOLS[type(op)]) for op in node.ops]
        if len(node.ops) == 1:
            return self._call("_pv_cmp", [node.left, symbols[0], node.comparators[0]], node)
        no_arguments = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                                     kwarg=None, defaults=[])
        links: list[ast.expr] = [
            ast.Tuple([symbol, ast.Lambda(no_arguments, right)], ast.Load())
            for symbol, right in zip(symbols, node.comparators)
        ]
        return self._call("_pv_chain", [node.left, *links], node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        return self._call("_pv_getitem", [node.value, node.slice], node)

    def visit_Slice(self, node: ast.Slice) -> ast.AST:
        self.generic_visit(node)
        parts = [part if part is not None else ast.Constant(None) for part in (node.lower, node.upper, node.step)]
        return self._call("_pv_slice", parts, node)

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        node.iter = self._call("_pv_iter", [node.iter], node.iter)
        return node


def _free_names(tree: ast.AST, candidates: Collection[str]) -> list[str]:
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in candidates})


@dataclass(frozen=True)
class CompiledExpression:
    """A validated expression compiled into a function of the names it uses."""

    text: str
    params: tuple[str, ...]
    function: Callable[..., Any]
    budget: expr_helpers.WorkBudget

    def __call__(self, env: Mapping[str, Any]) -> Any:
        self.budget.reset()
        return self.function(**{name: env[name] for name in self.params})


def compile_expression(
    text: str,
    names: Collection[str],
    callables: Collection[str] = (),
    *,
    helpers: Mapping[str, Any] | None = None,
    label: str = "expression",
) -> CompiledExpression:
    """Validate ``text`` and compile it; raise :class:`ExpressionError` listing every problem.

    ``helpers`` is the namespace of helper functions (default: the vocabulary with no
    tolerance bound; see :func:`pv.contracts.expr_helpers.namespace`). The compiled function
    takes the names of ``names`` and ``callables`` it uses as keyword arguments.
    """
    problems = check_expression(text, names, callables)
    if problems:
        raise ExpressionError(text, problems)
    tree, _ = parse_expression(text)
    assert tree is not None
    params = _free_names(tree, set(names) | set(callables))
    body = _Guard().visit(tree).body
    arguments = ast.arguments(
        posonlyargs=[], args=[], vararg=None,
        kwonlyargs=[ast.arg(arg=name) for name in params], kw_defaults=[None] * len(params),
        kwarg=None, defaults=[],
    )
    function_def = ast.FunctionDef(
        name="_pv_expression", args=arguments, body=[ast.Return(value=body)],
        decorator_list=[], returns=None,
    )
    if sys.version_info >= (3, 12):
        function_def.type_params = []
    module = ast.fix_missing_locations(ast.Module(body=[function_def], type_ignores=[]))
    namespace: dict[str, Any] = dict(helpers if helpers is not None else expr_helpers.namespace())
    # No builtins, except the import hook: C code called from the expression (a torch
    # operator) imports through the calling frame's builtins. Expressions cannot name it
    # (names starting with '_' are refused).
    namespace["__builtins__"] = {"__import__": builtins.__import__}
    budget = expr_helpers.WorkBudget()
    namespace["_pv_iter"] = budget.iterate
    for name, helper in expr_helpers.HELPERS.items():
        namespace[name] = budget.metered(namespace[name], helper.reads, helper.rate)
    for name, (_, reads) in expr_helpers.OPERATOR_GUARDS.items():
        namespace[name] = budget.metered(namespace[name], reads)
    namespace["_pv_chain"] = functools.partial(expr_helpers.compare_chain, namespace["_pv_cmp"])
    exec(compile(module, f"<pv {label}>", "exec"), namespace)  # the validated, rewritten tree only
    return CompiledExpression(text, tuple(params), namespace["_pv_expression"], budget)

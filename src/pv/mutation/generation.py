"""First-order mutants of Python source, found and applied on its AST.

A *site* is one place where one operator changes the code: a comparison
flipped, an arithmetic, bitwise or boolean operator exchanged, a constant
changed (an integer also lowered by one: ``1 -> 0``), a statement or a guard
removed, the first two arguments of a call swapped, the operands of an
order-dependent operator swapped (``a - b -> b - a``), a conditional expression
forced to either branch, a returned value replaced by ``None``, or a function
made to return at once. Sites are numbered in the
order of a deterministic walk of the module, so the same source always yields
the same sites; :func:`mutated_code` re-walks the source and changes site
``index`` only, keeping every line number (tracebacks and coverage of the
mutated code point at the real file).

What is never mutated: docstrings, annotations, imports, decorators,
``if TYPE_CHECKING:`` blocks, f-string parts and the text of ``raise``
statements (messages). Scopes select what is mutated: a function or method by
its qualified name (with everything nested in it), or ``""`` for the whole
module, including module-level and class-level assignments.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import CodeType

#: the operators, in the order they are documented
OPERATORS = ("compare", "arith", "bool", "constant", "remove", "guard", "swap_args", "early_return",
             "decrement", "swap_operands", "ternary", "return_none")

_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_ARITH_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd,
}
#: operators whose operands cannot be exchanged without changing the result
_ORDERED_OPS = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.MatMult)
_ORDERED_CMP = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
#: statements whose removal is a mutant: their effect is a side effect (a call, a store into an object)
_REMOVABLE = (ast.Expr, ast.AugAssign, ast.Raise, ast.Assert, ast.Delete)

_TEXT_LIMIT = 80


@dataclass(frozen=True)
class Site:
    """One mutation site of a module."""

    index: int
    operator: str
    #: qualified name of the innermost function or class holding the site ("" at module level)
    scope: str
    line: int
    end_line: int
    #: whether the site runs when the module is imported (module or class body, defaults), not in a call
    at_import: bool
    original: str
    mutated: str
    #: the number of this operator's site within its scope (a key stable under edits elsewhere)
    ordinal: int
    #: the changed text's place in the file: 1-based lines, 0-based character columns, end exclusive
    span: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: the text that replaces the span in the mutant (the diff a person reads)
    replacement: str = ""

    @property
    def key(self) -> str:
        """``scope:operator:ordinal`` (the module is prefixed by the caller)."""
        return f"{self.scope or '<module>'}:{self.operator}:{self.ordinal}"

    @property
    def change(self) -> str:
        """``original -> mutated`` as source text."""
        return f"{self.original} -> {self.mutated}"


def _text(node: ast.AST | list[ast.stmt]) -> str:
    if isinstance(node, list):
        text = "; ".join(ast.unparse(stmt) for stmt in node)
    else:
        text = ast.unparse(node)
    text = " ".join(text.split())
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def _is_docstring(stmt: ast.stmt, body: list[ast.stmt]) -> bool:
    return (stmt is body[0] and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _assigned_name(stmt: ast.stmt) -> str | None:
    """The name an ``X = ...`` or ``X: T = ...`` statement binds (None for anything else)."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    return names[0] if len(names) == 1 and len(targets) == 1 else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _in_scope(qualname: str, scopes: Collection[str]) -> bool:
    return any(scope == "" or qualname == scope or qualname.startswith(scope + ".") for scope in scopes)


class _Walker:
    """Walks a module in a fixed order; lists its sites, or rewrites the one at ``target``."""

    def __init__(self, scopes: Collection[str], target: int | None = None, source: str = "") -> None:
        self.scopes = tuple(scopes)
        self.lines = source.splitlines()
        self.target = target
        self.sites: list[Site] = []
        self._stack: list[str] = []
        self._in_function = 0
        self._ordinals: dict[tuple[str, str], int] = {}

    # --- bookkeeping ---------------------------------------------------------------------

    @property
    def _qualname(self) -> str:
        return ".".join(self._stack)

    def _active(self) -> bool:
        return _in_scope(self._qualname, self.scopes)

    def _site(self, operator: str, node: ast.AST, original: str, mutated: str,
              replaced: tuple[ast.AST, str] | None = None, insert: bool = False) -> bool:
        """Record a site; True when it is the target (the caller then applies the change).

        ``replaced``: the node whose text the mutant replaces, and its new text (default: ``node``
        and ``mutated``); ``insert``: the new text goes before the node instead.
        """
        if not self._active():
            return False
        scope_key = (self._qualname, operator)
        ordinal = self._ordinals.get(scope_key, 0)
        self._ordinals[scope_key] = ordinal + 1
        index = len(self.sites)
        where, text = replaced if replaced is not None else (node, mutated)
        span = self._span(where, insert)
        if insert:
            text = f"{text}\n{' ' * span[1]}"
        self.sites.append(Site(index, operator, self._qualname, node.lineno, node.end_lineno or node.lineno,
                               self._in_function == 0, original, mutated, ordinal, span, text))
        return index == self.target

    def _span(self, node: ast.AST, insert: bool) -> tuple[int, int, int, int]:
        """The node's place as (line, column, end line, end column), columns in characters."""
        line, end_line = node.lineno, node.end_lineno or node.lineno
        col = self._column(line, node.col_offset)
        if insert:
            return line, col, line, col
        return line, col, end_line, self._column(end_line, node.end_col_offset or 0)

    def _column(self, line: int, offset: int) -> int:
        """A UTF-8 byte offset of ``ast`` as a character column."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))

    # --- statements ----------------------------------------------------------------------

    def body(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            if _is_docstring(stmt, stmts):
                out.append(stmt)
                continue
            name = _assigned_name(stmt) if self._in_function == 0 else None
            if name is not None:  # a module or class attribute is a scope of its own: NAME or Class.NAME
                self._stack.append(name)
                out.append(self.stmt(stmt))
                self._stack.pop()
                continue
            if isinstance(stmt, _REMOVABLE) or (
                    isinstance(stmt, (ast.Assign, ast.AnnAssign)) and self._stores_into_object(stmt)):
                if self._site("remove", stmt, _text(stmt), "pass"):
                    out.append(ast.copy_location(ast.Pass(), stmt))
                    continue
            out.append(self.stmt(stmt))
        return out

    @staticmethod
    def _stores_into_object(stmt: ast.Assign | ast.AnnAssign) -> bool:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return stmt.value is not None and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in targets)

    def stmt(self, node: ast.stmt) -> ast.stmt:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return self.function(node)
        if isinstance(node, ast.ClassDef):
            self._stack.append(node.name)
            node.body = self.body(node.body)
            self._stack.pop()
            return node
        if isinstance(node, ast.If):
            if _is_type_checking(node.test):
                return node
            node.test = self.expr(node.test)
            replacement = self._guard(node)
            node.body = self.body(node.body)
            node.orelse = self.body(node.orelse) if node.orelse else node.orelse
            if replacement is not None:
                node.test = ast.copy_location(ast.Constant(replacement), node.test)
            return node
        if isinstance(node, ast.Raise):
            return node  # the text of an error message is not mutated; removing the raise is
        if isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
            node.value = self.expr(node.value)
            if self._in_function and self._site("return_none", node, _text(node), "return None",
                                                (node.value, "None")):
                node.value = ast.copy_location(ast.Constant(None), node.value)
            return node
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                node.value = self.expr(node.value)
            return node
        node = self._generic(node)
        return self._aug_assign(node) if isinstance(node, ast.AugAssign) else node

    def _aug_assign(self, node: ast.AugAssign) -> ast.stmt:
        swap = _ARITH_SWAP.get(type(node.op))
        if swap is not None:
            changed = ast.copy_location(ast.AugAssign(node.target, swap(), node.value), node)
            if self._site("arith", node, _text(node), _text(changed)):
                return changed
        return node

    def _guard(self, node: ast.If) -> bool | None:
        """The guard sites of an ``if``: its branch never taken, and (with an else) always taken."""
        found = None
        if self._site("guard", node.test, f"if {_text(node.test)}", "if False", (node.test, "False")):
            found = False
        if node.orelse and self._site("guard", node.test, f"if {_text(node.test)}", "if True", (node.test, "True")):
            found = True
        return found

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt:
        node.args = self._arguments(node.args)  # defaults run at definition time, in the outer scope
        self._stack.append(node.name)
        self._in_function += 1
        body = self.body(node.body)
        first = 1 if _is_docstring(node.body[0], node.body) else 0
        if len(body) > first and not isinstance(body[first], ast.Pass):
            if self._site("early_return", body[first], _text(body[first]), "return None", insert=True):
                body.insert(first, ast.copy_location(ast.Return(ast.Constant(None)), body[first]))
        node.body = body
        self._in_function -= 1
        self._stack.pop()
        return node

    def _arguments(self, args: ast.arguments) -> ast.arguments:
        args.defaults = [self.expr(value) for value in args.defaults]
        args.kw_defaults = [None if value is None else self.expr(value) for value in args.kw_defaults]
        return args

    def _generic(self, node: ast.AST) -> ast.AST:
        """Visit the child expressions and statement lists of ``node`` in field order."""
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment", "decorator_list"):
                continue
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, name, self.body(value))
            elif isinstance(value, list):
                setattr(node, name, [self._child(item) if isinstance(item, ast.AST) else item for item in value])
            elif isinstance(value, ast.AST):
                setattr(node, name, self._child(value))
        return node

    def _child(self, value: ast.AST) -> ast.AST:
        if isinstance(value, ast.expr):
            return self.expr(value)
        if isinstance(value, ast.stmt):
            return self.stmt(value)
        return self._generic(value)  # comprehension, keyword, excepthandler, withitem, match_case...

    # --- expressions ---------------------------------------------------------------------

    def expr(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.JoinedStr):
            return node
        if isinstance(node, (ast.Lambda,)):
            node.args = self._arguments(node.args)
            node.body = self.expr(node.body)
            return node
        node = self._generic(node)
        mutate = getattr(self, f"_expr_{type(node).__name__}", None)
        return mutate(node) if mutate is not None else node

    def _expr_Compare(self, node: ast.Compare) -> ast.expr:
        for position, op in enumerate(list(node.ops)):
            swap = _COMPARE_SWAP.get(type(op))
            if swap is None:
                continue
            changed = copy.copy(node)
            changed.ops = [*node.ops[:position], swap(), *node.ops[position + 1:]]
            if self._site("compare", node, _text(node), _text(changed)):
                return changed
        if len(node.ops) == 1 and isinstance(node.ops[0], _ORDERED_CMP) and (
                ast.dump(node.left) != ast.dump(node.comparators[0])):
            changed = ast.copy_location(ast.Compare(node.comparators[0], node.ops, [node.left]), node)
            if self._site("swap_operands", node, _text(node), _text(changed)):
                return changed
        return node

    def _expr_BinOp(self, node: ast.BinOp) -> ast.expr:
        swap = _ARITH_SWAP.get(type(node.op))
        if swap is not None:
            changed = ast.copy_location(ast.BinOp(node.left, swap(), node.right), node)
            if self._site("arith", node, _text(node), _text(changed)):
                return changed
        if isinstance(node.op, _ORDERED_OPS) and ast.dump(node.left) != ast.dump(node.right):
            changed = ast.copy_location(ast.BinOp(node.right, node.op, node.left), node)
            if self._site("swap_operands", node, _text(node), _text(changed)):
                return changed
        return node

    def _expr_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        operator = {ast.USub: "arith", ast.Not: "bool"}.get(type(node.op))
        if operator is not None and self._site(operator, node, _text(node), _text(node.operand)):
            return node.operand
        return node

    def _expr_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        changed = ast.copy_location(ast.BoolOp(other, node.values), node)
        if self._site("bool", node, _text(node), _text(changed)):
            return changed
        return node

    def _expr_Constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        if isinstance(value, bool):
            new: object = not value
        elif isinstance(value, int):
            new = value + 1
        elif isinstance(value, float):
            new = value * 2 if value else 1.0
        elif isinstance(value, str):
            new = "" if value else "mutant"
        else:
            return node
        changed = ast.copy_location(ast.Constant(new), node)
        if self._site("constant", node, _text(node), _text(changed)):
            return changed
        return self._decrement(node)

    def _decrement(self, node: ast.Constant) -> ast.expr:
        """A positive integer literal lowered by one: ``1 -> 0`` (in ``-1``: ``-0``)."""
        value = node.value
        if type(value) is not int or value <= 0:
            return node
        changed = ast.copy_location(ast.Constant(value - 1), node)
        if self._site("decrement", node, _text(node), _text(changed)):
            return changed
        return node

    def _expr_IfExp(self, node: ast.IfExp) -> ast.expr:
        """``a if c else b`` forced to ``a``, then to ``b``."""
        for branch in (node.body, node.orelse):
            if self._site("ternary", node, _text(node), _text(branch)):
                return branch
        return node

    def _expr_Call(self, node: ast.Call) -> ast.expr:
        args = node.args
        if len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args[:2]) and (
                ast.dump(args[0]) != ast.dump(args[1])):
            changed = ast.copy_location(ast.Call(node.func, [args[1], args[0], *args[2:]], node.keywords), node)
            if self._site("swap_args", node, _text(node), _text(changed)):
                return changed
        return node


def _walk(source: str, filename: str, scopes: Collection[str], target: int | None) -> tuple[ast.Module, list[Site]]:
    tree = ast.parse(source, filename)
    walker = _Walker(scopes, target, source)
    tree.body = walker.body(tree.body)
    return tree, walker.sites


def sites(source: str, scopes: Collection[str] = ("",), filename: str = "<source>") -> list[Site]:
    """Every mutation site of ``source`` inside ``scopes`` (qualified names; ``""``: the whole module)."""
    return _walk(source, filename, scopes, None)[1]


def mutated_tree(source: str, index: int, scopes: Collection[str] = ("",), filename: str = "<source>") -> ast.Module:
    """The AST of ``source`` with site ``index`` (of :func:`sites` with the same scopes) changed."""
    tree, found = _walk(source, filename, scopes, index)
    if index >= len(found):
        raise IndexError(f"{filename} has {len(found)} mutation sites, not {index + 1}")
    return ast.fix_missing_locations(tree)


def mutated_code(source: str, index: int, scopes: Collection[str] = ("",), filename: str = "<source>") -> CodeType:
    """The compiled module of :func:`mutated_tree`, with the real file's name and line numbers."""
    return compile(mutated_tree(source, index, scopes, filename), filename, "exec", dont_inherit=True)


def mutated_source(source: str, index: int, scopes: Collection[str] = ("",)) -> str:
    """The mutated module as source text (for display; comments and layout are not kept)."""
    return ast.unparse(mutated_tree(source, index, scopes))


def mutated_text(source: str, site: Site) -> str:
    """``source`` with the site's span replaced by its replacement: the file as the mutant reads,
    comments and layout kept everywhere else."""
    lines = source.splitlines(keepends=True)
    line, col, end_line, end_col = site.span
    before = "".join(lines[: line - 1]) + lines[line - 1][:col]
    after = lines[end_line - 1][end_col:] + "".join(lines[end_line:])
    return before + site.replacement + after


def unified_diff(source: str, site: Site, path: str) -> str:
    """The mutant as a unified diff of ``path`` (``a/path`` the original, ``b/path`` the mutant)."""
    import difflib

    diff = difflib.unified_diff(source.splitlines(keepends=True), mutated_text(source, site).splitlines(keepends=True),
                                f"a/{path}", f"b/{path}", n=2)
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


#: how a scope name is resolved against a module: a def, a class or a module-level assignment
ScopeResolver = Callable[[str], bool]


def defined_names(source: str, filename: str = "<source>") -> set[str]:
    """Qualified names of the functions and classes of ``source`` and of its module-level assignments."""
    tree = ast.parse(source, filename)
    names: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + stmt.name)
                visit(stmt.body, prefix + stmt.name + ".")
            elif not prefix and isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))

    visit(tree.body, "")
    return names

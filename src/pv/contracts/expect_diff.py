"""How a ``check:`` expression changed between two versions: conjuncts removed or added, bounds widened or narrowed.

An expression is split at its top-level ``and`` into conjuncts (compared by
their normalised text). A conjunct that differs from one of the other version
only in one number of a single comparison moved a bound: for ``x <= C`` a larger
``C`` widens it (admits more), for ``x >= C`` a smaller one does, and so on
through ``+``, ``-`` and unary minus. Any other rewrite cannot be shown to keep
or weaken the meaning, and is reported as a change.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

WIDENED, NARROWED, REMOVED, ADDED, CHANGED = "widened", "narrowed", "removed", "added", "changed"
_UPPER = (ast.Lt, ast.LtE)
_LOWER = (ast.Gt, ast.GtE)


@dataclass(frozen=True)
class ExprChange:
    """One conjunct-level change: ``kind`` one of widened, narrowed, removed, added, changed."""

    kind: str
    old: str | None
    new: str | None


def conjuncts(text: str) -> list[str]:
    """The top-level ``and`` parts of ``text``, normalised (the text itself if it does not parse)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return [" ".join(text.split())]
    parts: list[ast.expr] = []

    def split(node: ast.expr) -> None:
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                split(value)
        else:
            parts.append(node)

    split(tree)
    return [ast.unparse(part) for part in parts]


def _numbers(node: ast.AST, sign: int) -> Iterator[tuple[float, int | None]]:
    """(value, sign) of every number below ``node``; sign None where its direction is unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        yield float(node.value), sign
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield from _numbers(node.operand, -sign if sign else sign)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        yield from _numbers(node.left, sign)
        yield from _numbers(node.right, -sign if sign and isinstance(node.op, ast.Sub) else sign)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _numbers(child, None)  # inside a call or a product: direction unknown


class _Blank(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Name("_N"), node)
        return node


def _shape(text: str) -> str | None:
    try:
        return ast.dump(_Blank().visit(ast.parse(text, mode="eval")))
    except (SyntaxError, ValueError, RecursionError):
        return None


def bound_move(old: str, new: str) -> str | None:
    """``widened`` or ``narrowed`` when ``new`` is ``old`` with one number of a single comparison
    moved; ``None`` when the two differ otherwise."""
    if _shape(old) is None or _shape(old) != _shape(new):
        return None
    before, after = (ast.parse(text, mode="eval").body for text in (old, new))
    if not (isinstance(before, ast.Compare) and len(before.ops) == 1):
        return None
    op = before.ops[0]
    if not isinstance(op, (*_UPPER, *_LOWER)):
        return None
    moves = []
    for side, toward in ((0, -1), (1, 1)):  # left side: smaller admits more under <=; right: larger
        left_old = before.left if side == 0 else before.comparators[0]
        left_new = after.left if side == 0 else after.comparators[0]  # type: ignore[attr-defined]
        for (a, sign), (b, _) in zip(_numbers(left_old, 1), _numbers(left_new, 1)):
            if a != b:
                if sign is None:
                    return None
                grows = (b - a) * sign * toward > 0
                moves.append(grows if isinstance(op, _UPPER) else not grows)
    if len(moves) != 1:
        return None
    return WIDENED if moves[0] else NARROWED


def expression_changes(old: str | None, new: str | None) -> list[ExprChange]:
    """The conjunct-level changes from ``old`` to ``new`` (either may be absent)."""
    before = conjuncts(old) if old else []
    after = conjuncts(new) if new else []
    removed = [c for c in before if c not in after]
    added = [c for c in after if c not in before]
    changes: list[ExprChange] = []
    for conjunct in list(removed):
        partner = next((c for c in added if bound_move(conjunct, c)), None)
        if partner is not None:
            changes.append(ExprChange(bound_move(conjunct, partner) or CHANGED, conjunct, partner))
            removed.remove(conjunct)
            added.remove(partner)
    if len(removed) == 1 and len(added) == 1:
        return changes + [ExprChange(CHANGED, removed[0], added[0])]
    return (changes + [ExprChange(REMOVED, c, None) for c in removed]
            + [ExprChange(ADDED, None, c) for c in added])

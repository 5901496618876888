"""Applying a mutant to modules that are already imported: the mutated functions' code is swapped in.

A mutant inside a function body changes nothing that runs at import, so it can
be applied to the live process: every function object whose code is the
original (found among all live objects, so ``from module import f``, bound
methods, decorated and cached wrappers, closures made earlier and Triton's
kernels are all reached) gets the code compiled from the mutated module. This
is done for each function on the path to the site (``outer`` and
``outer.inner``), so that closures made before and after the swap both run the
mutant. The mutated function's text is also put in :mod:`linecache` for the
file, so that tools that read a function's source (Triton's interpreter,
``inspect``) see the mutant too, and Triton's interpreter forgets the kernels
it rewrote from the old text.

A mutant that runs at import (a module constant, a class attribute, a
default), or whose function is not live or cannot take the new code (another
closure layout), is not applicable here: the caller imports the mutated module
afresh instead.
"""

from __future__ import annotations

import ast
import gc
import linecache
import os
import sys
from collections.abc import Iterator
from types import CodeType, FunctionType

from pv.mutation.generation import Site, mutated_tree

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
#: a function's identity in its file: its name and its first line (decorators included)
CodeKey = tuple[str, int]


class NotApplicable(Exception):
    """The mutant cannot be applied to the live process (the caller imports the mutant instead)."""


def apply(path: str, source: str, site: Site, scopes: list[str]) -> None:
    """Swap the mutant at ``site`` of the file ``path`` into the live process (raises :class:`NotApplicable`)."""
    if site.at_import:
        raise NotApplicable("the site runs at import")
    tree = mutated_tree(source, site.index, scopes, path)
    chain = _function_chain(tree, site.scope)
    mutated = _codes(compile(tree, path, "exec", dont_inherit=True))
    keys = [(node.name, _first_line(node)) for node in chain]
    live = _live_functions(path, set(keys))
    if not live.get(keys[0]):
        raise NotApplicable(f"{site.scope.split('.')[0]} is not a live function of {path}")
    _publish_source(path, source, chain[0])
    for key in keys:
        for function in live.get(key, []):
            try:
                function.__code__ = mutated[key]
            except ValueError as err:  # a different closure layout
                raise NotApplicable(str(err)) from None
    _forget_compiled([function for functions in live.values() for function in functions])


def _forget_compiled(functions: list[FunctionType]) -> None:
    """Drop what source readers compiled from the swapped functions' old text.

    Triton's interpreter rewrites a kernel from its source on first use and keeps the result per
    function, process-wide; a kernel that ran before the swap would otherwise run unmutated.
    """
    interpreter = sys.modules.get("triton.runtime.interpreter")
    cache = getattr(getattr(interpreter, "InterpretedFunction", None), "rewritten_fn", None)
    if isinstance(cache, dict):
        for function in functions:
            cache.pop(function, None)


def _first_line(node: FunctionNode) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _function_chain(tree: ast.Module, scope: str) -> list[FunctionNode]:
    """The functions on the path to ``scope`` (its classes skipped), outermost first."""
    chain: list[FunctionNode] = []
    holder: ast.AST = tree
    for depth, part in enumerate(scope.split(".")):
        found = next((node for node in _definitions(holder) if node.name == part), None)
        if found is None:
            raise NotApplicable(f"no definition of {'.'.join(scope.split('.')[:depth + 1])}")
        if not isinstance(found, ast.ClassDef):
            chain.append(found)
        holder = found
    if not chain:
        raise NotApplicable(f"{scope} is not inside a function")
    return chain


def _definitions(holder: ast.AST) -> Iterator[FunctionNode | ast.ClassDef]:
    """The defs and classes directly inside ``holder`` (in nested blocks too, not in nested defs)."""
    todo = list(ast.iter_child_nodes(holder))
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
        elif not isinstance(node, ast.Lambda):
            todo += list(ast.iter_child_nodes(node))


def _codes(module_code: CodeType) -> dict[CodeKey, CodeType]:
    found: dict[CodeKey, CodeType] = {}
    todo = [module_code]
    while todo:
        code = todo.pop()
        for const in code.co_consts:
            if isinstance(const, CodeType):
                found.setdefault((const.co_name, const.co_firstlineno), const)
                todo.append(const)
    return found


def _live_functions(path: str, keys: set[CodeKey]) -> dict[CodeKey, list[FunctionType]]:
    """Every live function object defined at one of ``keys`` of the file ``path``."""
    real = os.path.realpath(path)
    found: dict[CodeKey, list[FunctionType]] = {}
    same_file: dict[str, bool] = {}
    for obj in gc.get_objects():
        if type(obj) is not FunctionType:  # not isinstance: a proxy answering __class__ may warn
            continue
        code = obj.__code__
        key = (code.co_name, code.co_firstlineno)
        if key not in keys:
            continue
        if code.co_filename not in same_file:
            same_file[code.co_filename] = os.path.realpath(code.co_filename) == real
        if same_file[code.co_filename]:
            found.setdefault(key, []).append(obj)
    return found


def _publish_source(path: str, source: str, node: FunctionNode) -> None:
    """Put the file's text, with the mutated function in place of the original, into linecache.

    The function keeps its first line and its number of lines (padded with blank lines), so
    every other definition of the file keeps its line numbers.
    """
    lines = source.splitlines(keepends=True)
    first, last = _first_line(node), node.end_lineno or node.lineno
    text = _fitted(ast.unparse(node).splitlines(), last - first + 1)
    indent = " " * node.col_offset
    new = lines[:first - 1] + [indent + line + "\n" for line in text] + lines[last:]
    linecache.cache[path] = (sum(map(len, new)), None, new, path)


def _fitted(text: list[str], size: int) -> list[str]:
    """``text`` in ``size`` lines: blank lines dropped, padded at the end; an inserted early
    ``return None`` shares the line of the simple statement after it."""
    text = [line for line in text if line.strip()]
    for position, line in enumerate(text[:-1]):
        following = text[position + 1]
        simple = not following.rstrip().endswith(":") and not following.lstrip().startswith("@")
        if len(text) > size and line.strip() == "return None" and simple and (
                len(line) - len(line.lstrip()) == len(following) - len(following.lstrip())):
            text[position:position + 2] = [f"{line}; {following.lstrip()}"]
            break
    if len(text) > size:
        raise NotApplicable("the mutated function does not fit the lines of the original")
    return text + [""] * (size - len(text))

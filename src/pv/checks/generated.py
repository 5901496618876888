"""Rendering compiled checks as Python test modules (``pv compile``).

A module embeds each obligation's :class:`~pv.checks.compiling.CheckUnit` as a literal
(plain data) and runs it through :func:`pv.plugins.contracts.run_unit`, the same
runtime as ``pv check``. Comments restate the check for a reviewer. The text is
deterministic: no timestamps, stable order, stable literal formatting.
"""

from __future__ import annotations

import keyword
import math
import pprint
import re
from typing import Any

from pv.checks.compiling import CompiledCheck
from pv.contracts.loading import Document

_HEADER = '''"""Obligation checks of {path}, written by `pv compile`; do not edit.

Contract {contract}, sha256 {sha256}.

Each test runs the same runtime as `pv check` and `pytest contracts/`: the check
data below is compiled by pv.checks.compiling and judged by its engines. Only the
whitelisted expression language of the contract is executed, never contract
text as written.
"""

from __future__ import annotations

import pytest

from pv.checks.compiling import CheckUnit
from pv.plugins.contracts import run_unit
'''


def module_name(contract: str) -> str:
    """``test_pvc_<contract>.py`` with every non-identifier character as ``_``."""
    return f"test_pvc_{re.sub(r'[^0-9A-Za-z_]', '_', contract)}.py"


def _one_line(text: Any) -> str:
    """``text`` on one line (runs of whitespace, newlines included, as one space): contract
    text put in a comment must not reach a line of code. A file name's undecodable bytes
    appear as ``\\udcXX`` escapes, so that the module is UTF-8 text."""
    return " ".join(str(text).encode("utf-8", "backslashreplace").decode("utf-8").split())


def _docstring_text(text: Any) -> str:
    """``text`` safe inside the module's docstring: one line, backslashes and quotes escaped."""
    return _one_line(text).replace("\\", "\\\\").replace('"', '\\"')


def _identifier(obligation: str, taken: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", obligation).upper()
    if not base.isidentifier() or keyword.iskeyword(base) or base.startswith("_"):
        base = f"PVC_{base}"
    name, counter = base, 2
    while name in taken:
        name, counter = f"{base}_{counter}", counter + 1
    taken.add(name)
    return name


def _comment(compiled: CompiledCheck) -> list[str]:
    unit, spec = compiled.unit, compiled.spec
    lines = [_one_line(f"# {unit.obligation}: {unit.property}")]
    if spec is None:
        lines.append(f"#   {_one_line(unit.unchecked_detail())}: reported as unchecked")
        return lines
    texts = {key: _one_line(text) for key, text in spec.texts.items()}
    lines += [f"#   given   {_one_line(name)}: {_one_line(domain.describe())}" for name, domain in spec.given.items()]
    lines += [f"#   {_one_line(key)}: {text}" for key, text in texts.items() if key.startswith("let ")]
    lines += [f"#   {key:<7} {texts[key]}" for key in ("assume", "result") if key in texts]
    if spec.raises:
        when = f" when {texts['raises.when']}" if "raises.when" in texts else " always"
        lines.append(f"#   raises  {_one_line(spec.raises.error)}{when}")
    if "expect" in texts:
        lines.append(f"#   expect  {texts['expect']}")
    lines.append(f"#   engines {', '.join(spec.engines)}")
    return lines


class _Code(str):
    """Source text that the literal shows as it is (``float('inf')``, where ``inf`` would not import)."""

    def __repr__(self) -> str:
        return str(self)


def _importable(data: Any) -> Any:
    """``data`` with every non-finite float spelled so that the module imports."""
    if isinstance(data, float) and not math.isfinite(data):
        return _Code(f"float({str(data)!r})")
    if isinstance(data, dict):
        return {key: _importable(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_importable(item) for item in data)
    return data


def _literal(data: Any) -> str:
    return pprint.pformat(_importable(data), indent=1, width=100, sort_dicts=False)


def check_module(name: str, text: str) -> str | None:
    """Why the module text ``text`` would not import (a syntax error), or None."""
    try:
        compile(text, name, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def render_module(doc: Document, compiled: list[CompiledCheck]) -> str:
    """The test module of one contract's compiled checks."""
    parts = [_HEADER.format(path=_docstring_text(doc.path), contract=_docstring_text(doc.stem), sha256=doc.sha256)]
    taken: set[str] = set()
    for check in compiled:
        name = _identifier(check.obligation, taken)
        engines = list(check.engines) or [None]
        parts.append("\n".join([
            "",
            *_comment(check),
            f"{name} = CheckUnit.from_json(",
            _literal(check.unit.to_json()),
            ")",
            "",
            "",
            f"@pytest.mark.parametrize(\"engine\", {engines!r})",
            f"def test_{name}(engine: str | None, request: pytest.FixtureRequest) -> None:",
            f"    run_unit({name}, engine, request)",
            "",
        ]))
    return "\n".join(parts)

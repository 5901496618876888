"""The gate report schema and validation against it."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pv._util.resources import schema_text

SCHEMA_FILE = "gate-report.schema.json"


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_text(SCHEMA_FILE))
    return Draft202012Validator(schema)


def _where(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def schema_problems(report: Any, limit: int = 5) -> list[str]:
    """Up to ``limit`` violations of the schema, each ``$.path: message``, in a stable order."""
    errors = sorted(_validator().iter_errors(report), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_where(e.absolute_path)}: {e.message}" for e in errors[:limit]]


def duplicate_problems(report: dict[str, Any]) -> list[str]:
    """Ids a valid report repeats: a falsifier id, an obligation of a contract, a contract name.

    JSON Schema cannot require unique ids; a reader that took the first entry
    of an id would let a repeated entry hide another.
    """
    sections = (
        ("falsifiers", lambda e: e["id"]),
        ("obligations", lambda e: f"{e['contract']} {e['obligation']}"),
        ("contracts", lambda e: e["name"]),
    )
    problems = []
    for section, ident in sections:
        first: dict[str, int] = {}
        for index, entry in enumerate(report[section]):
            seen = first.setdefault(ident(entry), index)
            if seen != index:
                problems.append(f"$.{section}[{index}]: repeats {ident(entry)} of $.{section}[{seen}]")
    return problems

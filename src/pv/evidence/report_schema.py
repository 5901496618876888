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

"""The gate report schema and validation against it."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pv._util.locations import repo_root

SCHEMA_FILE = "gate-report.schema.json"


def schema_path() -> Path:
    """``schema/gate-report.schema.json`` of the repository."""
    return repo_root() / "schema" / SCHEMA_FILE


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _where(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def schema_problems(report: Any, limit: int = 5) -> list[str]:
    """Up to ``limit`` violations of the schema, each ``$.path: message``, in a stable order."""
    errors = sorted(_validator().iter_errors(report), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_where(e.absolute_path)}: {e.message}" for e in errors[:limit]]

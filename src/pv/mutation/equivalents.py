"""The reviewed equivalents file: mutants no test can tell from the original, a reason each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pv._util.errors import UserError


@dataclass(frozen=True)
class Equivalent:
    key: str
    reason: str
    change: str


def load_equivalents(path: Path | None) -> dict[str, Equivalent]:
    """The reviewed equivalents file: ``key: {change: "a -> b", reason: why no test can tell}``."""
    if path is None or not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read the equivalent mutants: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of mutant key -> {{change, reason}}")
    found = {}
    for key, entry in data.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("reason"), str) and entry["reason"].strip()
                and isinstance(entry.get("change"), str) and set(entry) <= {"reason", "change"}):
            raise UserError(f"{path}: {key}: expected {{change: 'original -> mutated', reason: 'why'}} "
                            "with a non-empty reason")
        found[str(key)] = Equivalent(str(key), entry["reason"].strip(), entry["change"])
    return found


def of_modules(equivalents: dict[str, Equivalent], modules: set[str]) -> dict[str, Equivalent]:
    """The entries about the given modules (a run restricted with --module judges only those)."""
    return {key: entry for key, entry in equivalents.items() if key.rsplit(":", 3)[0] in modules}

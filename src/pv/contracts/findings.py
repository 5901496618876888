"""The finding: one problem found in a contract, with its rule and its place."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pv._util.text import shown


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a file; ``line`` and ``col`` are 1-based."""

    path: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{shown(self.path)}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Finding:
    """A rule violation: ``rule`` is a stable id such as ``PV-REF-001``."""

    rule: str
    severity: Severity
    message: str
    location: Location

    def format_text(self) -> str:
        """``path:line:col: error|warning RULE-ID message`` on one line (control characters escaped)."""
        message = self.message if self.message.isprintable() else ascii(self.message)[1:-1]
        return f"{self.location}: {self.severity.value} {self.rule} {message}"

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "message": self.message,
            "path": self.location.path,
            "line": self.location.line,
            "col": self.location.col,
        }

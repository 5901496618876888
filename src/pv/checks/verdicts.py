"""The verdict: the one result type of every engine (exhaustive, Hypothesis, CrossHair).

A verdict is honest about what was shown: ``proved`` only when the whole domain
was covered (exhaustive enumeration, or CrossHair exploring every path),
``passed`` for N examples without a failure, ``not-confirmed`` when a budget ran
out without a counterexample. An obligation without an executable check is
``unchecked``, never ``passed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PROVED = "proved"
    PASSED = "passed"
    NOT_CONFIRMED = "not-confirmed"
    REFUTED = "refuted"
    VACUOUS = "vacuous"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    UNCHECKED = "unchecked"


@dataclass
class Verdict:
    """The outcome of checking one obligation of one contract with one engine."""

    contract: str
    obligation: str
    engine: str
    status: Status
    detail: str = ""
    examples: int | None = None
    counterexample: dict[str, Any] | None = None
    replay: str | None = None
    budget: dict[str, Any] | None = None
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Verdict":
        return cls(**{**data, "status": Status(data["status"])})

"""The verdict: the one result type of every engine (exhaustive, Hypothesis, CrossHair).

A verdict is honest about what was shown: ``proved`` only when the whole domain
was covered (exhaustive enumeration, or CrossHair exploring every path),
``passed`` for N examples without a failure, ``not-confirmed`` when a budget ran
out without a counterexample. An obligation without an executable check is
``unchecked``, never ``passed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pv._util.enums import OrderedStrEnum


class Status(OrderedStrEnum):
    """The status of an obligation, in precedence order: the first one found decides.

    A refuted, error or vacuous verdict decides over any other; otherwise the
    strongest evidence: proved, passed, not-confirmed, not-applicable, unchecked.
    ``not-run`` is never an engine's verdict: it is the status of a checked
    obligation for which a run produced no verdict at all.
    """

    REFUTED = "refuted"
    ERROR = "error"
    VACUOUS = "vacuous"
    PROVED = "proved"
    PASSED = "passed"
    NOT_CONFIRMED = "not-confirmed"
    NOT_APPLICABLE = "not-applicable"
    UNCHECKED = "unchecked"
    NOT_RUN = "not-run"

    @property
    def is_success(self) -> bool:
        """Proved or passed: the only statuses a gate accepts."""
        return Status.PROVED <= self <= Status.PASSED


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

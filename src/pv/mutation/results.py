"""One mutant and its outcome: the statuses a run gives and the status that counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv.mutation.equivalents import Equivalent
from pv.mutation.generation import Site

KILLED, SURVIVED, TIMEOUT, EQUIVALENT, ERROR = "killed", "survived", "timeout", "equivalent", "error"
#: no selected test runs the mutant's lines (the shared report format's ``NoCoverage``)
NO_COVERAGE = "no-coverage"
#: a mutant not yet run (only in a report written while the run goes on)
NOT_RUN = "not-run"
STATUSES = (KILLED, SURVIVED, NO_COVERAGE, TIMEOUT, EQUIVALENT, ERROR)
#: what a run found that no test tells from the original (a listed equivalent may be one of them)
UNDETECTED = (SURVIVED, NO_COVERAGE)


def score(counts: Mapping[str, int]) -> float | None:
    """pv's score: killed / (killed + survived + no-coverage); timeouts, errors and equivalents are out."""
    decided = counts.get(KILLED, 0) + sum(counts.get(status, 0) for status in UNDETECTED)
    return counts.get(KILLED, 0) / decided if decided else None


def standard_score(counts: Mapping[str, int]) -> float | None:
    """The shared report format's score: (killed + timeout) / (killed + timeout + survived + no-coverage)."""
    detected = counts.get(KILLED, 0) + counts.get(TIMEOUT, 0)
    decided = detected + sum(counts.get(status, 0) for status in UNDETECTED)
    return detected / decided if decided else None


@dataclass
class Mutant:
    """One mutant, the tests selected for it, and (once run) its outcome."""

    key: str
    module: str
    path: Path
    scopes: list[str]
    site: Site
    tests: list[str] = field(default_factory=list)
    status: str = NOT_RUN
    detail: str = ""
    killed_by: str | None = None
    #: how it was killed: "assertion" (or pytest.fail), else the exception type that ended the test
    kind: str = ""
    seconds: float = 0.0
    #: how it was applied: "swapped" into a collected session, or "imported" afresh ("": not run)
    applied: str = ""
    #: the module's text the mutant is made from (read once when the run started)
    source: str = field(default="", repr=False)
    #: what its result depends on (:mod:`pv.mutation.incremental`), and whether it was copied from an earlier run
    cache_key: str = ""
    reused: bool = False
    #: None: every mutant runs; else whether it is in the run's random sample (:mod:`pv.mutation.sampling`)
    sampled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "module": self.module, "scope": self.site.scope, "operator": self.site.operator,
                "line": self.site.line, "change": self.site.change, "status": self.status, "detail": self.detail,
                "killed_by": self.killed_by, "kill_kind": self.kind, "tests_selected": len(self.tests),
                "seconds": round(self.seconds, 3), "applied": self.applied,
                "span": list(self.site.span), "replacement": self.site.replacement, "covered_by": self.tests,
                "cache_key": self.cache_key, "reused": self.reused,
                **({} if self.sampled is None else {"sampled": self.sampled})}


def counted(mutant: Mutant, equivalents: dict[str, Equivalent]) -> str:
    """The status that counts: a listed mutant that survived (or was not run as listed) is equivalent."""
    listed = mutant.key in equivalents and mutant.status in (*UNDETECTED, EQUIVALENT)
    return EQUIVALENT if listed else mutant.status

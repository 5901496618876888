"""One mutant and its outcome: the statuses a run gives and the status that counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv.mutation.equivalents import Equivalent
from pv.mutation.generation import Site

KILLED, SURVIVED, TIMEOUT, EQUIVALENT, ERROR = "killed", "survived", "timeout", "equivalent", "error"
#: a mutant not yet run (only in a report written while the run goes on)
NOT_RUN = "not-run"
STATUSES = (KILLED, SURVIVED, TIMEOUT, EQUIVALENT, ERROR)


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

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "module": self.module, "scope": self.site.scope, "operator": self.site.operator,
                "line": self.site.line, "change": self.site.change, "status": self.status, "detail": self.detail,
                "killed_by": self.killed_by, "kill_kind": self.kind, "tests_selected": len(self.tests),
                "seconds": round(self.seconds, 3), "applied": self.applied}



def counted(mutant: Mutant, equivalents: dict[str, Equivalent]) -> str:
    """The status that counts: a listed mutant that survived (or was not run as listed) is equivalent."""
    listed = mutant.key in equivalents and mutant.status in (SURVIVED, EQUIVALENT)
    return EQUIVALENT if listed else mutant.status

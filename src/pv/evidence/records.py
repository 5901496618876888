"""One test's phase reports (setup, call, teardown) folded into one record.

Works on pytest ``TestReport`` objects as the controller receives them, also
from xdist workers: only ``nodeid``, ``when``, ``outcome``, ``duration``,
``longrepr``, ``wasxfail`` and ``user_properties`` are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pv._util.properties import decode_property

#: outcome of one test
PASSED, FAILED, SKIPPED, ERROR, XFAILED, XPASSED = (
    "passed", "failed", "skipped", "error", "xfailed", "xpassed",
)
TEST_OUTCOMES = (PASSED, FAILED, SKIPPED, ERROR, XFAILED, XPASSED)

_REASON_LIMIT = 500


@dataclass
class TestRecord:
    """The result of one test item."""

    nodeid: str
    #: until a call phase arrives, a test that passed its setup has not finished
    outcome: str = ERROR
    reason: str | None = "the test reported no call phase (interrupted or crashed)"
    duration_s: float = 0.0
    called: bool = False
    properties: list[tuple[str, Any]] = field(default_factory=list)

    def values(self, name: str) -> list[Any]:
        """Every user property value recorded under ``name``, in order (JSON text parsed)."""
        return [decode_property(value) for key, value in self.properties if key == name]

    def first(self, name: str) -> Any:
        """The first user property value recorded under ``name`` (None if absent)."""
        found = self.values(name)
        return found[0] if found else None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


def skip_reason(longrepr: Any) -> str:
    """The reason of a skip, without pytest's ``Skipped: `` prefix."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    return _clip(text.removeprefix("Skipped: ")) or "skipped without a reason"


def failure_message(longrepr: Any) -> str:
    """The one-line cause of a failure or error: the crash message or the last line."""
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return _clip(message.splitlines()[0] if message.strip() else message)
    lines = [line for line in str(longrepr or "").splitlines() if line.strip()]
    return _clip(lines[-1]) if lines else "failed without a message"


def fold(record: TestRecord, report: Any) -> None:
    """Fold one phase report into ``record`` (phases arrive in order: setup, call, teardown)."""
    record.duration_s += float(getattr(report, "duration", 0.0) or 0.0)
    if len(report.user_properties) >= len(record.properties):
        record.properties = [tuple(prop) for prop in report.user_properties]
    wasxfail = getattr(report, "wasxfail", None)
    if report.when == "call":
        record.called = True
        if wasxfail is not None:
            record.outcome = XFAILED if report.outcome == SKIPPED else XPASSED
            record.reason = _clip(f"xfail: {wasxfail}" if wasxfail else "xfail")
        elif report.outcome == FAILED:
            record.outcome, record.reason = FAILED, failure_message(report.longrepr)
        elif report.outcome == SKIPPED:
            record.outcome, record.reason = SKIPPED, skip_reason(report.longrepr)
        else:
            record.outcome, record.reason = PASSED, None
    elif report.when == "setup":
        if report.outcome == FAILED:
            record.outcome = ERROR
            record.reason = f"error in setup: {failure_message(report.longrepr)}"
        elif report.outcome == SKIPPED:
            record.outcome = XFAILED if wasxfail is not None else SKIPPED
            record.reason = _clip(f"xfail: {wasxfail}") if wasxfail is not None else skip_reason(report.longrepr)
    elif report.outcome == FAILED and record.outcome not in (FAILED, ERROR):
        record.outcome = ERROR
        record.reason = f"error in teardown: {failure_message(report.longrepr)}"


def executed(record: TestRecord) -> bool:
    """Whether the test body ran (a call phase that was not a skip)."""
    return record.called and record.outcome != SKIPPED

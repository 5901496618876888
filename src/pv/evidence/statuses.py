"""The statuses of gate reports and gate decisions, each in precedence order (worst first).

Every enum's values are what the JSON holds; ``min`` over members (or
``OrderedStrEnum.first``) picks the one that decides.
"""

from __future__ import annotations

from pv._util.enums import OrderedStrEnum


class FalsifierStatus(OrderedStrEnum):
    """A falsifier in one report: the worst result among its tests and mutant runs decides."""

    FAILED = "failed"
    ERROR = "error"
    VACUOUS = "vacuous"
    SKIPPED = "skipped"
    NOT_RUN = "not-run"
    PASSED = "passed"


class MutantStatus(OrderedStrEnum):
    """One run of a falsifier with a planted defect; only ``killed`` shows the falsifier can fail.

    ``unproven``: the mutant run failed but the unmutated run did not pass
    either; ``crashed``: under the mutant the falsifier ended in an exception
    that is no kill (not an assertion, not a listed refusal): it proves nothing
    either way (both ``pv vacuity`` only; a gate report never records them).
    """

    SURVIVED = "survived"
    CRASHED = "crashed"
    ERROR = "error"
    UNPROVEN = "unproven"
    SKIPPED = "skipped"
    KILLED = "killed"


class RequirementStatus(OrderedStrEnum):
    """One ``qa_gate.require`` entry in a decision.

    ``unmet`` includes "no evidence" (no accepted report could decide it);
    ``deferred``: a gate for one profile does not decide a requirement on other
    profiles; it never makes a gate pass (``pv gate --release`` decides it).
    """

    UNMET = "unmet"
    DEFERRED = "deferred"
    MET = "met"


class GateVerdict(OrderedStrEnum):
    """A contract's gate, and the decision over all of them."""

    FAIL = "fail"
    PASS = "pass"

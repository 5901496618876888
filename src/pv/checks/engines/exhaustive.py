"""Exhaustive engine: every combination of finite inputs, in order, simplest first.

Covering every combination is a proof for that domain: the verdict is ``proved``
with the count, the same on a fast and a loaded machine. ``budget.seconds``, when
set, stops the run sooner (it also interrupts an evaluation that runs past it);
unset, only :data:`GUARD_SECONDS` stops a run that would never end. Running out is
``not-confirmed`` with the count covered.
"""

from __future__ import annotations

import itertools
import time

from pv.contracts.checkspec import CheckSpec
from pv.contracts.engines import EXHAUSTIVE_CAP
from pv.contracts.domains import product_size
from pv.contracts.expr_helpers import time_limit
from pv.checks.engines.base import EngineReport, failure_report
from pv.checks.evaluation import ERROR, PASS, REJECT, Bindings, Property
from pv.checks.verdicts import Status

#: Seconds after which a run without ``budget.seconds`` is stopped: a guard against a run that
#: never ends, far above what the combinations (at most the engine's cap) need.
GUARD_SECONDS = 3600.0


def _out_of_time(seconds: float, covered: int, total: int, admitted: int, budget: dict) -> EngineReport:
    return EngineReport(
        Status.NOT_CONFIRMED, f"time budget of {seconds} s spent after {covered} of {total} combinations",
        examples=admitted, budget=budget,
    )


def run(spec: CheckSpec, bindings: Bindings, key: str) -> EngineReport:
    """Try every combination of the finite inputs of ``spec`` within its budget (in a fixed
    order, so ``key`` does not change the run)."""
    total = product_size(spec.given)
    assert total is not None, "engine selection keeps infinite domains away from exhaustive"
    seconds = spec.budget.seconds or GUARD_SECONDS
    budget = {"combinations": total, "cap": spec.budget.examples or EXHAUSTIVE_CAP, "seconds": seconds}
    prop = Property(spec, bindings)
    names = list(spec.given)
    deadline = time.monotonic() + seconds
    covered = admitted = 0
    for combination in itertools.product(*(list(domain.values()) for domain in spec.given.values())):
        if time.monotonic() > deadline:
            return _out_of_time(seconds, covered, total, admitted, budget)
        inputs = dict(zip(names, combination))
        with time_limit(deadline):
            outcome = prop.evaluate(inputs)
        if outcome.status == ERROR and time.monotonic() > deadline:
            return _out_of_time(seconds, covered, total, admitted, budget)
        covered += 1
        if outcome.status == REJECT:
            continue
        if outcome.status != PASS:
            return failure_report(
                inputs, outcome, f"combination {covered} of {total}", examples=admitted, budget=budget
            )
        admitted += 1
    if admitted == 0:
        return EngineReport(
            Status.VACUOUS, f"assume rejects all {total} combinations", examples=0, budget=budget
        )
    return EngineReport(
        Status.PROVED, f"all {total} combinations enumerated, {admitted} satisfy assume, none fails",
        examples=admitted, budget=budget,
    )

"""Hypothesis engine: strategies from the declared domains, a deterministic CI profile.

Settings: a seed derived from the obligation's key (``contract::id``, see
:func:`seed_of`), so each obligation draws its own examples and the same ones on
every run, machine and install (Hypothesis's ``derandomize`` would derive the
seed from the source of this module's test function: one seed for every
obligation, changing with the installed copy), no literals of local modules
(:func:`_without_local_constants`), ``database=None``, ``deadline=None``,
``max_examples`` from ``budget.examples`` (default :data:`DEFAULT_EXAMPLES`,
:data:`DEFAULT_TENSOR_EXAMPLES` with tensors).
The number of examples is the budget: a search runs them all, so that its verdict is the
same on a fast and a loaded machine. ``budget.seconds``, when set, stops it sooner (it
also interrupts an evaluation); unset, only :data:`GUARD_SECONDS` stops a search that
would never end. Running out before any failure is ``not-confirmed``.
A failure is shrunk by Hypothesis for at most :data:`SHRINK_TRIES` more evaluations
(:data:`SHRINK_TRIES_TENSOR` with tensors; a count, so that the counterexample is the same on a fast and a loaded machine);
the verdict carries the smallest failing inputs found and Hypothesis's
``@reproduce_failure`` blob as the replay handle when it finished shrinking (the
inputs as JSON are in the counterexample, for ``pv check --replay``). A failure
found is never lost: the time budget running out while shrinking still refutes.

``vacuous``: Hypothesis found ``assume`` unsatisfiable or filtering too much,
or fewer than a tenth of the examples budget satisfied it while it rejected
more than nine inputs in ten.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any

from pv.contracts.checkspec import CheckSpec
from pv.contracts.expr_helpers import time_limit
from pv.checks.engines.base import EngineReport, failure_report
from pv.checks.evaluation import ERROR, PASS, REJECT, Bindings, Outcome, Property
from pv.checks.verdicts import Status

DEFAULT_EXAMPLES = 200
#: Seconds after which a search without ``budget.seconds`` is stopped: a guard against a search
#: that never ends, far above what a search of its examples needs.
GUARD_SECONDS = 3600.0
DEFAULT_TENSOR_EXAMPLES = 50
#: Evaluations Hypothesis may spend shrinking a failure before the smallest one so far is reported
#: (fewer with tensors, whose examples cost far more to draw and evaluate).
SHRINK_TRIES = 1000
SHRINK_TRIES_TENSOR = 100
_BLOB = re.compile(r"@reproduce_failure\([^)]*\)")


class _Refuted(Exception):
    """Raised inside the Hypothesis test so that it shrinks the input."""


def seed_of(key: str) -> int:
    """The Hypothesis seed of the obligation ``key``: the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


class _StopSearch(BaseException):
    """Raised inside the Hypothesis test to end the search at once (not an ``Exception``, so
    Hypothesis does not take it for a failure to shrink): ``budget.seconds`` is spent, or
    :data:`SHRINK_TRIES` evaluations have shrunk a failure."""


def _examples(spec: CheckSpec) -> int:
    return spec.budget.examples or (DEFAULT_EXAMPLES if spec.plain else DEFAULT_TENSOR_EXAMPLES)


def _blob(err: BaseException) -> str | None:
    for note in getattr(err, "__notes__", []):
        found = _BLOB.search(note)
        if found:
            return found.group(0)
    return None


@contextlib.contextmanager
def _one_torch_thread(tensors: bool) -> Iterator[None]:
    """Run tensor checks on one intra-op thread: their tensors are tiny, and thread-pool
    hand-offs cost more than the work (about 1000x on a loaded 2-core machine)."""
    if not tensors:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _without_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing in literals of the process's "local" modules.

    Hypothesis (6.131 on) sometimes draws constants found in the source of the
    modules imported so far that do not live in site-packages: which ones depends
    on the install (an editable pv is local, a wheel is not) and on what was
    imported before, so the same seed would draw different examples. The draws
    keep Hypothesis's built-in edge values. Hypothesis versions without this
    feature are left as they are.
    """
    from hypothesis.internal.conjecture import providers

    local = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if local is None or cache is None or not hasattr(providers, "Constants"):
        yield
        return
    cache.cache.clear()
    providers._get_local_constants = providers.Constants
    try:
        yield
    finally:
        providers._get_local_constants = local
        cache.cache.clear()


def run(spec: CheckSpec, bindings: Bindings, key: str) -> EngineReport:
    """Search the inputs of ``spec`` with Hypothesis, seeded from the obligation ``key``."""
    with _one_torch_thread(not spec.plain), _without_local_constants():
        return _run(spec, bindings, seed_of(key))


def _run(spec: CheckSpec, bindings: Bindings, seed_value: int) -> EngineReport:
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from hypothesis import reject as reject_example
    from hypothesis import strategies as st
    from hypothesis.errors import FailedHealthCheck, Flaky, Unsatisfiable

    examples = _examples(spec)
    shrink_tries = SHRINK_TRIES if spec.plain else SHRINK_TRIES_TENSOR
    seconds = spec.budget.seconds or GUARD_SECONDS
    budget: dict[str, Any] = {"max_examples": examples, "seed": seed_value, "database": None, "seconds": seconds}
    deadline = time.monotonic() + seconds
    prop = Property(spec, bindings)
    counts = {"admitted": 0, "rejected": 0, "shrinking": 0}
    failures: list[tuple[dict, Outcome]] = []

    def check(inputs: dict) -> None:
        if time.monotonic() > deadline:
            raise _StopSearch("the time budget ran out while shrinking")
        if failures:
            counts["shrinking"] += 1
            if counts["shrinking"] > shrink_tries:
                raise _StopSearch(f"shrinking stopped after {shrink_tries} tries")
        with time_limit(deadline):
            outcome = prop.evaluate(inputs)
        if outcome.status == ERROR and time.monotonic() > deadline:
            raise _StopSearch("the time budget ran out while shrinking")
        if outcome.status == REJECT:
            counts["rejected"] += 1
            reject_example()
        if outcome.status != PASS:
            failures.append((dict(inputs), outcome))
            raise _Refuted(outcome.message)
        counts["admitted"] += 1

    profile = settings(
        derandomize=False, database=None, deadline=None, max_examples=examples, print_blob=True,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet, phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example),
    )
    strategy = st.fixed_dictionaries({name: d.strategy() for name, d in spec.given.items()})
    test = seed(seed_value)(profile(given(strategy)(check)))
    try:
        test()
    except _StopSearch as stop:
        if failures:
            inputs, outcome = failures[-1]  # the smallest failure so far
            return failure_report(inputs, outcome, f"counterexample ({stop})", examples=counts["admitted"],
                                  budget=budget)
        return EngineReport(
            Status.NOT_CONFIRMED, f"time budget of {seconds} s spent after {counts['admitted']} examples, none failed",
            examples=counts["admitted"], budget=budget,
        )
    except _Refuted as err:
        inputs, outcome = failures[-1]  # Hypothesis replays the shrunk example last
        return failure_report(
            inputs, outcome, "shrunk counterexample", replay=_blob(err), examples=counts["admitted"], budget=budget,
        )
    except (Unsatisfiable, FailedHealthCheck) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return EngineReport(
            Status.VACUOUS, f"assume filters out (nearly) every input: {first_line}",
            examples=counts["admitted"], budget=budget,
        )
    except Flaky as err:
        return EngineReport(Status.ERROR, f"the check is not deterministic: {err}", budget=budget)
    admitted, rejected = counts["admitted"], counts["rejected"]
    budget["rejected"] = rejected
    if rejected > 9 * admitted and admitted < max(1, examples // 10):
        return EngineReport(
            Status.VACUOUS, f"only {admitted} examples satisfied assume ({rejected} rejected)",
            examples=admitted, budget=budget,
        )
    return EngineReport(
        Status.PASSED, f"{admitted} examples, none fails ({rejected} rejected by assume)",
        examples=admitted, budget=budget,
    )

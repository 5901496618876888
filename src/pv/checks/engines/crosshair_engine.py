"""CrossHair engine: symbolic execution over plain Python inputs, with explicit budgets.

For each check a small function is generated whose parameters are the inputs
(annotated from their domains; a choice is its index), whose PEP 316
precondition admits only in-domain inputs satisfying ``assume``, and whose
postcondition is the property judged by :class:`pv.checks.evaluation.Property`.
CrossHair's public ``analyze_function`` runs it with:

- ``per_condition_timeout``: ``budget.seconds`` or :data:`DEFAULT_SECONDS` (CPU s),
- ``per_path_timeout``: :data:`DEFAULT_PATH_SECONDS` (at most the condition's),
- ``max_iterations``: ``budget.examples`` or :data:`DEFAULT_ITERATIONS` paths,
- a total for the process, :data:`DEFAULT_TOTAL_SECONDS` (``set_total_budget``):
  once spent, further checks are ``not-confirmed`` without running.

CrossHair's defaults (no condition timeout in the API, 5 uninteresting
iterations on the command line) stop early and can miss bugs silently; these
settings exhaust small functions and find the planted defects of the tests.

``proved`` only when CrossHair confirms the condition over all paths;
``not-confirmed`` when the budget runs out first. A counterexample found
symbolically is realised and judged again concretely before it is reported.
"""

from __future__ import annotations

import collections
import itertools
import linecache
import time
from typing import Any

from pv.contracts.expr_helpers import symbolic_values
from pv.contracts.checkspec import CheckSpec
from pv.checks.engines.base import EngineReport, failure_report
from pv.checks.evaluation import PASS, REJECT, Bindings, Property
from pv.checks.verdicts import Status

DEFAULT_SECONDS = 10.0
DEFAULT_PATH_SECONDS = 2.0
DEFAULT_ITERATIONS = 5000
DEFAULT_TOTAL_SECONDS = 60.0

_ledger = {"total": DEFAULT_TOTAL_SECONDS, "spent": 0.0}
_serial = itertools.count()


def set_total_budget(seconds: float) -> None:
    """Set the CrossHair time allowed to this process from now on (``pv check --crosshair-total``)."""
    _ledger["total"], _ledger["spent"] = float(seconds), 0.0


def _function_source(names: list[str]) -> str:
    params = ", ".join(f"{name}: _pv_type_{index}" for index, name in enumerate(names))
    args = ", ".join(names)
    return (
        f"def pv_obligation({params}) -> bool:\n"
        f'    """\n'
        f"    pre: _pv_pre({args})\n"
        f"    post: _\n"
        f'    """\n'
        f"    return _pv_body({args})\n"
    )


def _generated_function(spec: CheckSpec, prop: Property, recorded: dict[str, Any], key: str) -> Any:
    import crosshair

    names = list(spec.given)
    domains = list(spec.given.values())

    def convert(raw: tuple) -> dict[str, Any]:
        return {name: domain.convert(value) for name, domain, value in zip(names, domains, raw)}

    def precondition(*raw: Any) -> bool:
        if not all(domain.admits(value) for domain, value in zip(domains, raw)):
            return False
        return prop.precondition(convert(raw)).status != REJECT

    def body(*raw: Any) -> bool:
        if prop.evaluate(convert(raw)).status == PASS:
            return True
        recorded["raw"] = crosshair.deep_realize(raw)
        return False

    source = _function_source(names)
    filename = f"<pv crosshair check {key} #{next(_serial)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # CrossHair reads the docstring
    namespace: dict[str, Any] = {"_pv_pre": precondition, "_pv_body": body}
    namespace.update({f"_pv_type_{i}": domain.annotation() for i, domain in enumerate(domains)})
    exec(compile(source, filename, "exec"), namespace)  # our template; contract text is not in it
    return namespace["pv_obligation"], convert, filename


def run(spec: CheckSpec, bindings: Bindings, key: str) -> EngineReport:
    """Look for a counterexample to ``spec`` symbolically with CrossHair within its budget
    (``key`` names the generated function's source in tracebacks)."""
    from crosshair.core_and_libs import analyze_function
    from crosshair.options import AnalysisKind, AnalysisOptionSet
    from crosshair.statespace import MessageType
    from crosshair.util import NotDeterministic

    remaining = _ledger["total"] - _ledger["spent"]
    per_condition = min(spec.budget.seconds or DEFAULT_SECONDS, remaining)
    per_path = min(DEFAULT_PATH_SECONDS, per_condition)
    iterations = spec.budget.examples or DEFAULT_ITERATIONS
    budget: dict[str, Any] = {
        "per_condition_seconds": per_condition, "per_path_seconds": per_path,
        "max_iterations": iterations, "total_seconds": _ledger["total"],
    }
    if per_condition <= 0:
        return EngineReport(Status.NOT_CONFIRMED, f"the CrossHair total of {_ledger['total']} s is spent", budget=budget)

    recorded: dict[str, Any] = {}
    prop = Property(spec, bindings, passthrough=(NotDeterministic,))
    function, convert, filename = _generated_function(spec, prop, recorded, key)
    stats: collections.Counter = collections.Counter()
    options = AnalysisOptionSet(
        analysis_kind=[AnalysisKind.PEP316], per_condition_timeout=per_condition,
        per_path_timeout=per_path, max_iterations=iterations, stats=stats,
    )
    started = time.perf_counter()
    try:
        with symbolic_values():
            messages = [message for checkable in analyze_function(function, options) for message in checkable.analyze()]
    finally:
        _ledger["spent"] += time.perf_counter() - started
        linecache.cache.pop(filename, None)
    budget["paths"] = stats.get("num_paths", 0)
    budget["seconds_used"] = round(time.perf_counter() - started, 3)
    states = {message.state for message in messages}

    if "raw" in recorded:
        inputs = convert(recorded["raw"])
        outcome = Property(spec, bindings).evaluate(inputs)
        if outcome.status != PASS:
            return failure_report(inputs, outcome, "CrossHair counterexample", budget=budget)
        return EngineReport(Status.ERROR, f"CrossHair reported a failure for {inputs!r} that passes when replayed", budget=budget)
    failed = states & {MessageType.POST_FAIL, MessageType.EXEC_ERR, MessageType.POST_ERR,
                       MessageType.SYNTAX_ERR, MessageType.IMPORT_ERR}
    if failed or not messages:
        text = "; ".join(message.message for message in messages) or "CrossHair analysed no condition"
        return EngineReport(Status.ERROR, f"CrossHair: {text}", budget=budget)
    if MessageType.PRE_UNSAT in states:
        return EngineReport(Status.VACUOUS, "CrossHair found no input satisfying the domains and assume", budget=budget)
    if states == {MessageType.CONFIRMED}:
        return EngineReport(Status.PROVED, f"CrossHair confirmed the property over all {budget['paths']} paths", budget=budget)
    return EngineReport(
        Status.NOT_CONFIRMED,
        f"no counterexample in {budget['paths']} paths, but not every path was explored within the budget",
        budget=budget,
    )

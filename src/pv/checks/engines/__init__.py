"""Engines that decide an obligation: exhaustive enumeration, Hypothesis, CrossHair.

Each engine module (named in :data:`pv.contracts.engines.ENGINES`) has
``run(spec, bindings, key) -> EngineReport``; engines are imported only when used
(Hypothesis and CrossHair are heavy).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pv.contracts.checkspec import CheckSpec
from pv.contracts.engines import ENGINES
from pv.checks.engines.base import EngineReport, failure_report
from pv.checks.evaluation import FAIL, ERROR, PASS, Bindings, Property
from pv.checks.verdicts import Status



def run_engine(name: str, spec: CheckSpec, bindings: Bindings, key: str) -> EngineReport:
    """Run engine ``name`` on a bound check; ``key`` (``contract::obligation``) names the run
    (Hypothesis draws its examples from a seed derived from it)."""
    return importlib.import_module(ENGINES[name].module).run(spec, bindings, key)


def run_replay(spec: CheckSpec, bindings: Bindings, inputs_json: Mapping[str, Any]) -> EngineReport:
    """Judge exactly one input, given as JSON (a counterexample's ``inputs``)."""
    missing = sorted(set(spec.given) - set(inputs_json))
    unknown = sorted(set(inputs_json) - set(spec.given))
    if missing or unknown:
        return EngineReport(Status.ERROR, f"replay inputs do not match given: missing {missing}, unknown {unknown}")
    try:
        inputs = {name: domain.from_json(inputs_json[name]) for name, domain in spec.given.items()}
    except (KeyError, TypeError, ValueError) as err:
        return EngineReport(Status.ERROR, f"replay inputs cannot be read: {err}")
    outcome = Property(spec, bindings).evaluate(inputs)
    if outcome.status in (FAIL, ERROR):
        return failure_report(inputs, outcome, "replayed")
    if outcome.status == PASS:
        return EngineReport(Status.PASSED, "the replayed input passes", examples=1)
    return EngineReport(Status.NOT_APPLICABLE, "assume rejects the replayed input")

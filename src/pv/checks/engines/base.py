"""What every engine returns, and the shape of a counterexample."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pv.contracts.domains import to_json
from pv.checks.evaluation import ERROR, Outcome
from pv.checks.verdicts import Status


@dataclass
class EngineReport:
    """An engine's finding; :func:`pv.checks.compiling.run_check` adds contract, obligation and timing."""

    status: Status
    detail: str
    examples: int | None = None
    counterexample: dict[str, Any] | None = None
    replay: str | None = None
    budget: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def inputs_json(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_json(value) for name, value in inputs.items()}


def replay_handle(inputs: Mapping[str, Any]) -> str:
    """The inputs as JSON, for ``pv check --replay``."""
    return json.dumps(inputs_json(inputs), sort_keys=True)


def counterexample(inputs: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The failing inputs, what went wrong, and the implementation's result (JSON-safe)."""
    example = {"inputs": inputs_json(inputs), "failure": outcome.message, "result": to_json(outcome.result)}
    if outcome.derived:
        example["derived"] = inputs_json(outcome.derived)
    return example


def failure_report(
    inputs: Mapping[str, Any], outcome: Outcome, how_found: str, *, replay: str | None = None, **fields: Any
) -> EngineReport:
    """``refuted`` (the implementation failed) or ``error`` (an expression of the check broke)."""
    status = Status.ERROR if outcome.status == ERROR else Status.REFUTED
    shown = ", ".join(f"{name}={value!r}" for name, value in inputs_json({**inputs, **(outcome.derived or {})}).items())
    detail = f"{how_found}: {shown}: {outcome.message}"
    return EngineReport(
        status, detail, counterexample=counterexample(inputs, outcome),
        replay=replay or replay_handle(inputs), **fields,
    )

"""Compile contract obligations into checks and run them: the one runtime of every front end.

``pytest contracts/`` (:mod:`pv.plugins.contracts`), ``pv check``, and the modules
that ``pv compile`` writes all go through :func:`compile_unit` and :func:`run_check`.

A :class:`CheckUnit` is the data one obligation's check needs (its ``check:``
block and the ``implementation`` strings of the contract's equations); it is
plain data, so generated modules embed it as a literal. :func:`compile_unit`
parses and compiles it (no import of ``impl/``); :func:`run_check` binds the
implementations and runs one engine, returning a :class:`~pv.checks.verdicts.Verdict`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pv.contracts.checkspec import CheckSpec, Issue, equation_implementations, is_contract, parse_check
from pv.contracts.engines import ENGINES, EXHAUSTIVE_CAP, engine_unfit
from pv.checks.verdicts import Status, Verdict

#: Statuses that fail a pytest item and ``pv check`` (not-confirmed: see :func:`inconclusive`).
FAILING = frozenset({Status.REFUTED, Status.ERROR, Status.VACUOUS, Status.NOT_CONFIRMED})
#: Engine name of the verdict of an obligation whose check block is invalid.
INVALID_ENGINE = "check"
#: Engine name of the verdict of an obligation without a check.
UNCHECKED_ENGINE = "none"
REPLAY_ENGINE = "replay"


@dataclass(frozen=True)
class CheckUnit:
    """One obligation's check as data: enough to compile and run it anywhere."""

    contract: str
    obligation: str
    path: str
    line: int
    check: Any
    implementations: dict[str, Any] = field(default_factory=dict)
    property: str = ""
    #: the falsifiers that decide the obligation in ``pv gate`` (``falsification_tests[].obligation``)
    falsifiers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "falsifiers": list(self.falsifiers)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CheckUnit":
        return cls(**{**data, "falsifiers": tuple(data.get("falsifiers", ()))})

    def unchecked_detail(self) -> str:
        """What an unchecked verdict says: no executable check, and who decides the obligation instead."""
        if not self.falsifiers:
            return "the obligation has no executable check"
        return (f"the obligation has no executable check; falsifier(s) {', '.join(self.falsifiers)} "
                "decide it in pv gate")


@dataclass
class CompiledCheck:
    """A unit with its parsed check (``spec``), or the issues that keep it from compiling."""

    unit: CheckUnit
    spec: CheckSpec | None
    issues: list[Issue]

    @property
    def contract(self) -> str:
        return self.unit.contract

    @property
    def obligation(self) -> str:
        return self.unit.obligation

    @property
    def checked(self) -> bool:
        return self.unit.check is not None

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines to run: none for an unchecked obligation, ``check`` for an invalid one."""
        if not self.checked:
            return ()
        return self.spec.engines if self.spec else (INVALID_ENGINE,)


def obligation_id(obligation: Any, index: int) -> str:
    """The obligation's ``id``, or ``obligation-N`` (1-based) for the older dialect without ids."""
    if isinstance(obligation, Mapping) and isinstance(obligation.get("id"), str):
        return obligation["id"]
    return f"obligation-{index + 1}"


def _called(check: Any) -> list[str]:
    calls = check.get("call") if isinstance(check, Mapping) else None
    calls = [calls] if isinstance(calls, str) else calls
    return [name for name in calls if isinstance(name, str)] if isinstance(calls, list) else []


def document_units(doc: Any) -> list[CheckUnit]:
    """One unit per obligation of a loaded document (``pv.contracts.loading.Document``)."""
    data = doc.data
    if not is_contract(data):
        return []
    implementations = equation_implementations(data)
    deciding: dict[str, list[str]] = {}
    for test in data.get("falsification_tests") or []:
        if isinstance(test, Mapping) and isinstance(test.get("id"), str) and isinstance(test.get("obligation"), str):
            deciding.setdefault(test["obligation"], []).append(test["id"])
    units = []
    for index, obligation in enumerate(data["proof_obligations"]):
        body = obligation if isinstance(obligation, Mapping) else {}
        called = {name: implementations[name] for name in _called(body.get("check")) if name in implementations}
        ident = obligation_id(obligation, index)
        units.append(CheckUnit(
            contract=doc.stem,
            obligation=ident,
            path=str(doc.path),
            line=doc.locate("proof_obligations", index).line,
            check=body.get("check"),
            implementations=called,
            property=str(body.get("property", "")),
            falsifiers=tuple(deciding.get(ident, ())),
        ))
    return units


def compile_unit(unit: CheckUnit) -> CompiledCheck:
    """Parse and compile one unit's check (an unchecked unit compiles to no engines)."""
    if unit.check is None:
        return CompiledCheck(unit, None, [])
    spec, issues = parse_check(unit.check, unit.implementations)
    return CompiledCheck(unit, spec, issues)


def compile_document(doc: Any) -> list[CompiledCheck]:
    """Every obligation of ``doc`` compiled, in document order (unchecked ones included)."""
    return [compile_unit(unit) for unit in document_units(doc)]


def _verdict(compiled: CompiledCheck, engine: str, status: Status, detail: str, **fields: Any) -> Verdict:
    return Verdict(compiled.contract, compiled.obligation, engine, status, detail, **fields)


def _needs_cuda(spec: CheckSpec) -> bool:
    return any(domain.needs_cuda for domain in spec.given.values())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_check(
    compiled: CompiledCheck,
    engine: str | None = None,
    *,
    allow: Iterable[str] = (),
    replay: Mapping[str, Any] | None = None,
) -> Verdict:
    """Run one engine (default: the first selected) on a compiled check and return its verdict.

    ``allow``: module prefixes allowed for bindings besides the defaults.
    ``replay``: JSON inputs (a counterexample's ``inputs``) to judge once instead of searching.
    """
    from pv.checks.evaluation import BindingError, allowed_modules, bind
    from pv.checks.engines import run_engine, run_replay

    if not compiled.checked:
        return _verdict(compiled, UNCHECKED_ENGINE, Status.UNCHECKED, compiled.unit.unchecked_detail())
    spec = compiled.spec
    if spec is None:
        problems = "; ".join(issue.message for issue in compiled.issues)
        return _verdict(compiled, engine or INVALID_ENGINE, Status.ERROR, f"invalid check: {problems}")
    engine = REPLAY_ENGINE if replay is not None else (engine or spec.engines[0])
    if engine != REPLAY_ENGINE:
        unfit = engine_unfit(engine, spec.given, spec.budget.examples or EXHAUSTIVE_CAP)
        if unfit:
            status = Status.NOT_APPLICABLE if engine in ENGINES else Status.ERROR
            return _verdict(compiled, engine, status, unfit)
    if _needs_cuda(spec) and not _cuda_available():
        return _verdict(compiled, engine, Status.NOT_APPLICABLE, "an input tensor lives on cuda and no CUDA device is present")
    started = time.perf_counter()
    try:
        bindings = bind(spec, allowed_modules(allow))
    except BindingError as err:
        return _verdict(compiled, engine, Status.ERROR, f"cannot bind the check: {err}")
    if replay is not None:
        report = run_replay(spec, bindings, replay)
    else:
        report = run_engine(engine, spec, bindings, f"{compiled.contract}::{compiled.obligation}")
    return _verdict(
        compiled, engine, report.status, report.detail, examples=report.examples,
        counterexample=report.counterexample, replay=report.replay, budget=report.budget,
        duration_s=round(time.perf_counter() - started, 4), extra=report.extra,
    )


def inconclusive(verdict: Verdict, engines: tuple[str, ...]) -> bool:
    """Whether ``verdict`` is a not-confirmed run of one of several engines of its obligation.

    Such a run (CrossHair out of budget next to a Hypothesis search, say) is
    reported but does not fail the obligation: the other engines decide it, and
    it is never a proof. A not-confirmed run of an obligation's only engine fails.
    """
    return verdict.status == Status.NOT_CONFIRMED and len(engines) > 1


def fails(verdict: Verdict, engines: tuple[str, ...]) -> bool:
    """Whether ``verdict`` fails its obligation, whose check runs ``engines``."""
    return verdict.status in FAILING and not inconclusive(verdict, engines)


def format_verdict(verdict: Verdict) -> str:
    """A verdict in a few lines: status and detail, then the counterexample and the replay handle."""
    lines = [f"{verdict.contract}::{verdict.obligation}[{verdict.engine}] {verdict.status.value}: {verdict.detail}"]
    if verdict.counterexample is not None:
        lines.append("counterexample: " + json.dumps(verdict.counterexample, sort_keys=True))
    if verdict.replay:
        lines.append("replay: " + verdict.replay)
    if verdict.budget:
        lines.append("budget: " + json.dumps(verdict.budget, sort_keys=True))
    return "\n".join(lines)


@dataclass
class ContractSet:
    """The contracts found under some paths, the YAML files that are not contracts, and load failures."""

    documents: list[Any]
    not_contracts: list[str]
    load_errors: list[str]


def collect_contracts(paths: Iterable[str]) -> ContractSet:
    """Load every YAML file under ``paths``; a missing path or no contract at all is a UserError."""
    from pathlib import Path

    from pv._util.errors import UserError
    from pv.contracts.loading import LoadError, collect_paths, load_document

    paths = list(paths)
    for path in paths:
        if not Path(path).exists():
            raise UserError(f"{path}: no such file or directory")
    found = ContractSet([], [], [])
    for path in collect_paths(paths):
        try:
            doc = load_document(path)
        except LoadError as err:
            found.load_errors.append(err.finding.format_text())
            continue
        if is_contract(doc.data):
            found.documents.append(doc)
        else:
            found.not_contracts.append(str(path))
    if not found.documents and not found.load_errors:
        raise UserError(f"no contracts (YAML files with proof_obligations) under {', '.join(paths)}")
    return found

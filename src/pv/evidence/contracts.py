"""What a gate needs to know about each contract: identity, falsifiers, obligations, requirements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv.contracts.requirements import Requirement, parse_requirements


@dataclass
class ContractInfo:
    """One contract file as gate reports and the gate see it."""

    #: the file stem, as verdicts and reports name the contract
    name: str
    path: str
    sha256: str
    gate_id: str | None
    requirements: list[Requirement]
    falsifiers: list[str]
    obligations: list[str]
    checked_obligations: list[str]
    compile_error: str | None
    #: obligation id -> the falsifiers that name it (``falsification_tests[].obligation``), in file order
    obligation_falsifiers: dict[str, list[str]]
    #: the modules its checks bind (``implementation`` and ``constants`` bindings), sorted
    modules: list[str]
    #: ``qa_gate.min_mutation_score``: the least mutation score the gate accepts (None: it asks for none)
    min_mutation_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "qa_gate": self.gate_id,
            "falsifiers": self.falsifiers,
            "obligations": self.obligations,
            "checked_obligations": self.checked_obligations,
            "compile_error": self.compile_error,
        }


def _falsifier_ids(data: dict[str, Any]) -> list[str]:
    tests = data.get("falsification_tests") or []
    return [str(t["id"]) for t in tests if isinstance(t, dict) and t.get("id")]


def _requirements(data: dict[str, Any], path: str) -> list[Requirement]:
    found, problems = parse_requirements(data)
    if problems:
        raise UserError(f"{path}: {problems[0].where()}: {problems[0].message}")
    return found


def _min_mutation_score(gate: Any, path: str) -> float | None:
    """``qa_gate.min_mutation_score``, or None when the gate asks for no mutation score."""
    value = gate.get("min_mutation_score") if isinstance(gate, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{path}: qa_gate.min_mutation_score: expected a number in 0..1, got {value!r}")
    return float(value)


def _bound_modules(data: dict[str, Any]) -> list[str]:
    """The modules of every ``module:name`` binding of the contract's equations and checks."""
    from pv.contracts.checkspec import parse_binding

    bindings = [eq.get("implementation") for eq in (data.get("equations") or {}).values() if isinstance(eq, dict)]
    for obligation in data.get("proof_obligations") or []:
        check = obligation.get("check") if isinstance(obligation, dict) else None
        constants = check.get("constants") if isinstance(check, dict) else None
        bindings += list(constants.values()) if isinstance(constants, dict) else []
    return sorted({found[0] for found in map(parse_binding, bindings) if found is not None})


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX form) when it is below it, else as given."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _obligations(doc: Any) -> tuple[list[str], list[str], dict[str, list[str]], str | None]:
    """All obligation ids, the ids of those with an executable check, the falsifiers deciding
    each obligation that some falsifier names, and a compile failure."""
    from pv.checks.compiling import compile_document, obligation_id

    try:
        compiled = compile_document(doc)
    except Exception as err:  # a broken check is recorded as such; the gate fails the contract
        listed = doc.data.get("proof_obligations")
        ids = [obligation_id(ob, i) for i, ob in enumerate(listed if isinstance(listed, list) else [])]
        return ids, [], {}, f"{type(err).__name__}: {err}"
    deciding = {c.obligation: list(c.unit.falsifiers) for c in compiled if c.unit.falsifiers}
    return [c.obligation for c in compiled], [c.obligation for c in compiled if c.checked], deciding, None


def load_contracts(folder: Path, root: Path) -> list[ContractInfo]:
    """Every contract under ``folder``, compiled, sorted by path; paths shown relative to ``root``.

    Raises ``pv.contracts.loading.LoadError`` (a UserError) for an unreadable contract file.
    """
    from pv.contracts.loading import collect_paths, load_document

    contracts: list[ContractInfo] = []
    for path in collect_paths([folder]):
        doc = load_document(path)
        data = doc.data if isinstance(doc.data, dict) else {}
        shown = shown_path(Path(doc.path), root)
        gate = data.get("qa_gate")
        obligations, checked, deciding, error = _obligations(doc)
        contracts.append(ContractInfo(
            name=doc.stem,
            path=shown,
            sha256=doc.sha256,
            gate_id=str(gate["id"]) if isinstance(gate, dict) and gate.get("id") else None,
            requirements=_requirements(data, shown),
            falsifiers=_falsifier_ids(data),
            obligations=obligations,
            checked_obligations=checked,
            compile_error=error,
            obligation_falsifiers=deciding,
            modules=_bound_modules(data),
            min_mutation_score=_min_mutation_score(gate, shown),
        ))
    _refuse_repeated_names(contracts)
    return contracts


def _refuse_repeated_names(contracts: list[ContractInfo]) -> None:
    """A report names contracts by file stem: two files with one stem would be one contract."""
    seen: dict[str, str] = {}
    for contract in contracts:
        other = seen.setdefault(contract.name, contract.path)
        if other != contract.path:
            raise UserError(f"{contract.path}: contract name {contract.name} is also the name of {other}; "
                            "a gate report names contracts by file stem, so the stems must differ")

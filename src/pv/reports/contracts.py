"""What a gate needs to know about each contract: identity, falsifiers, obligations, requirements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv.errors import UserError


@dataclass(frozen=True)
class Requirement:
    """``qa_gate.require`` entry: ``falsifier`` must pass on one of ``profiles``."""

    falsifier: str
    profiles: tuple[str, ...]


@dataclass
class ContractInfo:
    """One contract file as gate reports and the gate see it."""

    name: str
    path: str
    sha256: str
    title: str | None
    gate_id: str | None
    requirements: list[Requirement]
    falsifiers: list[str]
    obligations: list[str]
    checked_obligations: list[str] = field(default_factory=list)
    compile_error: str | None = None

    def answers_to(self, name: str) -> bool:
        """Whether ``name`` (a file stem or the contract's ``name`` field) means this contract."""
        return name in (self.name, self.title)

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


def _obligation_ids(data: dict[str, Any]) -> list[str]:
    obligations = data.get("proof_obligations") or []
    return [
        str(ob["id"]) if isinstance(ob, dict) and ob.get("id") else f"#{index + 1}"
        for index, ob in enumerate(obligations)
    ]


def _falsifier_ids(data: dict[str, Any]) -> list[str]:
    tests = data.get("falsification_tests") or []
    return [str(t["id"]) for t in tests if isinstance(t, dict) and t.get("id")]


def _requirements(data: dict[str, Any], path: str) -> list[Requirement]:
    gate = data.get("qa_gate")
    require = gate.get("require") if isinstance(gate, dict) else None
    if require is None:
        return []
    if not isinstance(require, list):
        raise UserError(f"{path}: qa_gate.require: expected a list of {{falsifier, profiles}}")
    found = []
    for index, entry in enumerate(require):
        where = f"{path}: qa_gate.require[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("falsifier"), str):
            raise UserError(f"{where}: expected {{falsifier: FT-id, profiles: [names]}}")
        profiles = entry.get("profiles")
        if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
            raise UserError(f"{where}.profiles: expected a non-empty list of profile names")
        found.append(Requirement(entry["falsifier"], tuple(profiles)))
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _compile(doc: Any) -> tuple[list[str], str | None]:
    """Ids of the obligations that compile to a check, or the reason compiling failed."""
    from pv.compiling import compile_document

    try:
        checks = compile_document(doc)
    except Exception as err:  # a broken check is recorded as such; the gate fails the contract
        return [], f"{type(err).__name__}: {err}"
    return sorted({str(check.obligation) for check in checks}), None


def load_contracts(folder: Path, root: Path, *, compile_checks: bool = True) -> list[ContractInfo]:
    """Every contract under ``folder``, sorted by path; paths are shown relative to ``root``.

    With ``compile_checks``, each contract is compiled to learn which obligations
    carry an executable check. Raises ``pv.loading.LoadError`` (a UserError) for an
    unreadable contract file.
    """
    from pv.loading import collect_paths, load_document

    contracts = []
    for path in collect_paths([folder]):
        doc = load_document(path)
        data = doc.data
        shown = _relative(Path(doc.path), root)
        gate = data.get("qa_gate")
        info = ContractInfo(
            name=doc.stem,
            path=shown,
            sha256=doc.sha256,
            title=data.get("name") if isinstance(data.get("name"), str) else None,
            gate_id=str(gate["id"]) if isinstance(gate, dict) and gate.get("id") else None,
            requirements=_requirements(data, shown),
            falsifiers=_falsifier_ids(data),
            obligations=_obligation_ids(data),
        )
        if compile_checks:
            info.checked_obligations, info.compile_error = _compile(doc)
        contracts.append(info)
    return contracts

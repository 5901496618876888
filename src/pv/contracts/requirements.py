"""``qa_gate.require``: which falsifier must pass on which hardware profiles, read in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Requirement:
    """``qa_gate.require[index]``: ``falsifier`` must pass on one of ``profiles``."""

    index: int
    falsifier: str
    profiles: tuple[str, ...]


@dataclass(frozen=True)
class RequirementProblem:
    """A malformed entry: where (keys below ``qa_gate``) and what is wrong."""

    path: tuple[str | int, ...]
    message: str

    def where(self) -> str:
        """``qa_gate.require[2].profiles`` for messages."""
        text = "qa_gate"
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


def parse_requirements(data: Any) -> tuple[list[Requirement], list[RequirementProblem]]:
    """The well-formed entries of a contract's ``qa_gate.require``, and a problem for each other one."""
    gate = data.get("qa_gate") if isinstance(data, dict) else None
    listed = gate.get("require") if isinstance(gate, dict) else None
    if listed is None:
        return [], []
    if not isinstance(listed, list):
        return [], [RequirementProblem(("require",), "expected a list of {falsifier, profiles}")]
    found, problems = [], []
    for index, entry in enumerate(listed):
        if not isinstance(entry, dict) or not isinstance(entry.get("falsifier"), str):
            problems.append(RequirementProblem(("require", index), "expected {falsifier: FT-id, profiles: [names]}"))
            continue
        profiles = entry.get("profiles")
        if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
            problems.append(RequirementProblem(("require", index, "profiles"), "expected a non-empty list of profile names"))
            continue
        found.append(Requirement(index, entry["falsifier"], tuple(profiles)))
    return found, problems

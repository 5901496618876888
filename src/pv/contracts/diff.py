"""Semantic diff of two versions of one contract, with a semantic-version bump suggestion.

Items are matched by identity, not position: equations by name, falsifiers and
Kani harnesses by id, obligations by id (else by their ``property`` text, else
by position), QA-gate requirements by falsifier. Each change gets a level:

- **major**: a promise was withdrawn or changed, so that an implementation
  verified against the old version may fail the new one, or a dependant may
  rely on something no longer promised. An equation, obligation, falsifier,
  Kani harness, QA gate, gate requirement or gate profile removed; an entry
  removed from a list (invariants, preconditions, postconditions,
  ``depends_on``, gate checks); an equation's ``formula``, ``domain`` or
  ``codomain`` changed; an obligation's ``formal``, ``type``, ``applies_to``
  or ``tolerance`` changed, added or removed (a tighter tolerance fails
  implementations that passed, a looser one weakens what dependants rely on);
  a falsifier's ``prediction`` or ``rule`` changed; a Kani harness's
  ``obligation`` changed or its ``bound`` lowered; the QA gate's ``id`` or the
  contract's ``name`` changed.
- **minor**: new promises that leave the existing ones intact: items or list
  entries added, a Kani ``bound`` raised or ``strategy`` changed, an
  obligation's executable ``check`` or an equation's ``implementation``
  changed, the gate's ``pass_criteria`` changed.
- **patch**: anything else (wording, references, notes, test paths, evidence,
  and the sections pv does not interpret).

The suggested bump is the highest level among the changes; ``version`` fields
themselves are not compared. When both versions declare a semantic version,
the declared bump is checked against the suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pv.contracts.requirements import parse_requirements

LEVELS = ("none", "patch", "minor", "major")
MAJOR, MINOR, PATCH = "major", "minor", "patch"
LIST = "list"    # entries removed: major; entries added: minor
BOUND = "bound"  # lowered: major; raised: minor


@dataclass(frozen=True)
class Change:
    """One difference between two versions of a contract, with its semver level."""

    level: str
    where: str
    what: str

    def format_text(self) -> str:
        return f"{self.level.upper():5}  {self.where}: {self.what}"


#: section -> field -> level (fields not listed are patch-level)
FIELDS: dict[str, dict[str, str]] = {
    "equations": {"formula": MAJOR, "domain": MAJOR, "codomain": MAJOR, "invariants": LIST,
                  "preconditions": LIST, "postconditions": LIST, "implementation": MINOR},
    "proof_obligations": {"formal": MAJOR, "type": MAJOR, "applies_to": MAJOR, "tolerance": MAJOR, "check": MINOR},
    "falsification_tests": {"prediction": MAJOR, "rule": MAJOR},
    "kani_harnesses": {"obligation": MAJOR, "bound": BOUND, "strategy": MINOR},
    "qa_gate": {"id": MAJOR, "checks": LIST, "pass_criteria": MINOR},
    "metadata": {"depends_on": LIST},
    "": {"name": MAJOR},
}
IGNORED = {("", "version"), ("metadata", "version")}
ITEM_SECTIONS = ("equations", "proof_obligations", "falsification_tests", "kani_harnesses")


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return f"`{text}`" if len(text) <= 70 else f"`{text[:67]}...`"


def _items(data: Any, section: str) -> dict[str, Any]:
    """Key -> item of a section: equations by name, others by id (obligations: id, property, position)."""
    value = data.get(section) if isinstance(data, dict) else None
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    keyed: dict[str, Any] = {}
    for index, item in enumerate(value if isinstance(value, list) else []):
        key = None
        if isinstance(item, dict):
            key = item.get("id") if isinstance(item.get("id"), str) else None
            if key is None and section == "proof_obligations" and isinstance(item.get("property"), str):
                key = item["property"]
        key = key if key is not None and key not in keyed else f"#{index}"
        keyed[key] = item
    return keyed


def _field_changes(section: str, where: str, old: Any, new: Any) -> Iterator[Change]:
    old = old if isinstance(old, dict) else {}
    new = new if isinstance(new, dict) else {}
    for name in list(old) + [k for k in new if k not in old]:
        if (section, name) in IGNORED or old.get(name) == new.get(name):
            continue
        yield from _value_change(FIELDS.get(section, {}).get(name, PATCH), f"{where}{name}", old.get(name), new.get(name))


def _value_change(level: str, where: str, old: Any, new: Any) -> Iterator[Change]:
    if level == LIST and (isinstance(old, list) or old is None) and (isinstance(new, list) or new is None):
        old, new = old or [], new or []
        for entry in old:
            if entry not in new:
                yield Change(MAJOR, where, f"removed {_short(entry)}")
        for entry in new:
            if entry not in old:
                yield Change(MINOR, where, f"added {_short(entry)}")
        return
    if old is None:
        yield Change(MINOR if level in (LIST, BOUND) else level, where, f"added {_short(new)}")
    elif new is None:
        yield Change(MAJOR if level in (LIST, BOUND) else level, where, f"removed (was {_short(old)})")
    elif level == BOUND and _numbers(old, new):
        yield Change(MAJOR if new < old else MINOR, where, f"{'lowered' if new < old else 'raised'} {old} -> {new}")
    elif where.endswith("tolerance") and _numbers(old, new):
        yield Change(level, where, f"{'tightened' if new < old else 'loosened'} {old} -> {new}")
    else:
        yield Change(level if level != LIST else MAJOR, where, f"changed {_short(old)} -> {_short(new)}")


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _section_items(section: str, old: Any, new: Any) -> Iterator[Change]:
    before, after = _items(old, section), _items(new, section)
    for key, item in before.items():
        if key not in after:
            yield Change(MAJOR, section, f"removed {key}")
        else:
            yield from _field_changes(section, f"{section}[{key}].", item, after[key])
    for key in after:
        if key not in before:
            yield Change(MINOR, section, f"added {key}")


def _gate(old: Any, new: Any) -> Iterator[Change]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old != new:
            yield Change(MAJOR if new is None else MINOR, "qa_gate", "removed" if new is None else "added")
        return
    yield from _field_changes("qa_gate", "qa_gate.", {k: v for k, v in old.items() if k != "require"},
                              {k: v for k, v in new.items() if k != "require"})
    before, after = (_requirements(gate) for gate in (old, new))
    for falsifier, profiles in before.items():
        if falsifier not in after:
            yield Change(MAJOR, "qa_gate.require", f"removed {falsifier}")
        else:
            yield from _value_change(LIST, f"qa_gate.require[{falsifier}].profiles", profiles, after[falsifier])
    for falsifier in after:
        if falsifier not in before:
            yield Change(MINOR, "qa_gate.require", f"added {falsifier}")


def _requirements(gate: dict[str, Any]) -> dict[str, list[Any]]:
    found, _ = parse_requirements({"qa_gate": gate})
    return {r.falsifier: list(r.profiles) for r in found}


def diff_contracts(old: Any, new: Any) -> list[Change]:
    """Every semantic change from ``old`` to ``new`` (plain contract data)."""
    old = old if isinstance(old, dict) else {}
    new = new if isinstance(new, dict) else {}
    changes: list[Change] = []
    for section in ITEM_SECTIONS:
        changes += _section_items(section, old, new)
    changes += _gate(old.get("qa_gate"), new.get("qa_gate"))
    changes += _field_changes("metadata", "metadata.", old.get("metadata"), new.get("metadata"))
    handled = set(ITEM_SECTIONS) | {"qa_gate", "metadata"}
    top_old = {k: v for k, v in old.items() if k not in handled}
    top_new = {k: v for k, v in new.items() if k not in handled}
    changes += _field_changes("", "", top_old, top_new)
    return changes


def suggested_level(changes: list[Change]) -> str:
    """The highest level among ``changes`` (``none`` for no change)."""
    return max((c.level for c in changes), key=LEVELS.index, default="none")


_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def declared_version(data: Any) -> str | None:
    """``metadata.version``, else the top-level ``version``."""
    if isinstance(data, dict):
        for value in ((data.get("metadata") or {}).get("version") if isinstance(data.get("metadata"), dict) else None,
                      data.get("version")):
            if isinstance(value, str):
                return value
    return None


def bump(version: str, level: str) -> str | None:
    """``version`` bumped by ``level``; None when it is not ``MAJOR.MINOR.PATCH``."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        return None
    major, minor, patch = map(int, match.groups())
    return {"major": f"{major + 1}.0.0", "minor": f"{major}.{minor + 1}.0",
            "patch": f"{major}.{minor}.{patch + 1}", "none": version}[level]


def declared_level(old_version: str, new_version: str) -> str | None:
    """The bump from ``old_version`` to ``new_version`` (None if either is not semver or it goes back)."""
    a, b = (_SEMVER.fullmatch(v) for v in (old_version, new_version))
    if a is None or b is None:
        return None
    old, new = tuple(map(int, a.groups())), tuple(map(int, b.groups()))
    if new < old:
        return None
    for level, index in (("major", 0), ("minor", 1), ("patch", 2)):
        if new[index] != old[index]:
            return level
    return "none"


def level_at_least(level: str, required: str) -> bool:
    """Whether ``level`` is ``required`` or higher in :data:`LEVELS` (none < patch < minor < major)."""
    return LEVELS.index(level) >= LEVELS.index(required)


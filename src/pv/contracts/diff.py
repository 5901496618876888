"""Semantic diff of two versions of one contract, with a semantic-version bump suggestion.

Both versions are read as :class:`~pv.contracts.view.ContractView`. Items are
matched by identity, not position: equations by name, falsifiers and Kani
harnesses by id, obligations by id (else by their ``property`` text, else by
position), QA-gate requirements by falsifier. A change inside a nested value is
reported at the leaf that changed (``proof_obligations[X].check.tolerance.abs``),
with its old and new value. Each change gets a level:

- **major** (breaking): a promise was withdrawn, weakened or changed, so that a
  dependant may rely on something no longer promised, or an implementation
  verified against the old version may fail the new one. An equation,
  obligation, falsifier, Kani harness, QA gate, gate requirement or gate
  profile removed; an entry removed from a list (invariants, preconditions,
  postconditions, ``depends_on``, gate checks); an equation's ``formula``,
  ``domain`` or ``codomain`` changed; an obligation's ``formal``, ``type``,
  ``applies_to`` or ``tolerance`` changed, added or removed; a falsifier's
  ``prediction`` or ``rule`` changed, or its ``obligation`` (the obligation it
  decides) changed or removed; a Kani harness's ``obligation`` changed or
  its ``bound`` lowered; the QA gate's ``id`` or the contract's ``name`` changed.
  In an executable ``check``: a tolerance loosened (or added), a conjunct of
  ``expect`` removed or its bound widened, a conjunct of ``assume`` added or its
  bound narrowed, an input's domain narrowed, and any other rewrite of what is
  checked (``expect``, ``assume``, ``given``, ``let``, ``result``, ``raises``,
  ``call``, ``constants``, ``nan_policy``) that cannot be shown to keep it.
- **minor**: new promises that leave the existing ones intact: items or list
  entries added, a falsifier's ``obligation`` added (more evidence for an
  obligation), a Kani ``bound`` raised or ``strategy`` changed, an equation's
  ``implementation`` changed, the gate's ``pass_criteria`` changed; in a check,
  a tolerance tightened, a conjunct of ``expect`` added or its bound narrowed,
  an ``assume`` conjunct removed or its bound widened, an input's domain widened,
  a check added, its engines or budget changed.
- **patch**: anything else (wording, references, notes, test paths, evidence,
  and the sections pv does not interpret).

The suggested bump is the highest level among the changes; ``version`` fields
themselves are not compared. When both versions declare a semantic version,
the declared bump is checked against the suggestion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pv.contracts import expect_diff
from pv.contracts.view import ITEM_SECTIONS, ContractView, thaw

LEVELS = ("none", "patch", "minor", "major")
MAJOR, MINOR, PATCH = "major", "minor", "patch"
LIST = "list"    # entries removed: major; entries added: minor
BOUND = "bound"  # lowered: major; raised: minor
CHECK = "check"  # an executable check: see _check_changes


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
    "proof_obligations": {"formal": MAJOR, "type": MAJOR, "applies_to": MAJOR, "tolerance": MAJOR, "check": CHECK},
    "falsification_tests": {"prediction": MAJOR, "rule": MAJOR, "obligation": LIST},
    "kani_harnesses": {"obligation": MAJOR, "bound": BOUND, "strategy": MINOR},
    "qa_gate": {"id": MAJOR, "checks": LIST, "pass_criteria": MINOR},
    "metadata": {"depends_on": LIST},
    "": {"name": MAJOR},
}
IGNORED = {("", "version"), ("metadata", "version")}
#: check keys whose change is not a change of what is promised
_CHECK_EVIDENCE = {"engine": MINOR, "budget": MINOR}
#: domain keys that bound the inputs from below / above
_DOMAIN_LOWER, _DOMAIN_UPPER = ("min", "min_len"), ("max", "max_len")
_LIMIT = 100


def _shown(value: Any) -> str:
    """A value as one line in backticks (mappings and lists as JSON), cut in the middle when long."""
    text = value if isinstance(value, str) else json.dumps(thaw(value), sort_keys=True, default=str)
    text = " ".join(str(text).split())
    return f"`{text}`" if len(text) <= _LIMIT else f"`{text[:_LIMIT // 2 - 2]} ... {text[-(_LIMIT // 2 - 3):]}`"


def _pair(old: Any, new: Any) -> str:
    return f"{_shown(old)} -> {_shown(new)}"


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _field_changes(section: str, where: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for name in list(old) + [k for k in new if k not in old]:
        if (section, name) in IGNORED or old.get(name) == new.get(name):
            continue
        level = FIELDS.get(section, {}).get(name, PATCH)
        if level == CHECK:
            yield from _check_changes(f"{where}{name}", old.get(name), new.get(name))
        else:
            yield from _value_change(level, f"{where}{name}", old.get(name), new.get(name))


def _value_change(level: str, where: str, old: Any, new: Any) -> Iterator[Change]:
    if level == LIST and (isinstance(old, tuple) or old is None) and (isinstance(new, tuple) or new is None):
        old, new = old or (), new or ()
        for entry in old:
            if entry not in new:
                yield Change(MAJOR, where, f"removed {_shown(entry)}")
        for entry in new:
            if entry not in old:
                yield Change(MINOR, where, f"added {_shown(entry)}")
        return
    if old is None:
        yield Change(MINOR if level in (LIST, BOUND) else level, where, f"added {_shown(new)}")
    elif new is None:
        yield Change(MAJOR if level in (LIST, BOUND) else level, where, f"removed (was {_shown(old)})")
    elif isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                yield from _value_change(level if level != LIST else MAJOR, f"{where}.{key}", old.get(key), new.get(key))
    elif level == BOUND and _numbers(old, new):
        yield Change(MAJOR if new < old else MINOR, where, f"{'lowered' if new < old else 'raised'} {old} -> {new}")
    elif where.endswith("tolerance") and _numbers(old, new):
        yield Change(level, where, f"{'tightened' if new < old else 'loosened'} {old} -> {new}")
    else:
        yield Change(level if level != LIST else MAJOR, where, f"changed {_pair(old, new)}")


# --- executable checks -------------------------------------------------------------------


def _check_changes(where: str, old: Any, new: Any) -> Iterator[Change]:
    """The changes of an obligation's ``check:`` block, leaf by leaf, judged by what they promise."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        if old is None:
            yield Change(MINOR, where, f"added {_shown(new)}")
        elif new is None:
            yield Change(MAJOR, where, f"removed (was {_shown(old)})")
        else:
            yield Change(MAJOR, where, f"changed {_pair(old, new)}")
        return
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        at = f"{where}.{key}"
        if key == "tolerance":
            yield from _tolerance_changes(at, before, after)
        elif key in ("expect", "assume") and isinstance(before or "", str) and isinstance(after or "", str):
            yield from _expression_changes(at, key, before, after)
        elif key == "given" and isinstance(before, Mapping) and isinstance(after, Mapping):
            yield from _given_changes(at, before, after)
        else:
            yield from _value_change(_CHECK_EVIDENCE.get(key, MAJOR), at, before, after)


def _tolerance_changes(where: str, old: Any, new: Any) -> Iterator[Change]:
    """A larger (or newly declared) tolerance weakens the promise; a smaller one strengthens it."""
    old = old if isinstance(old, Mapping) else {}
    new = new if isinstance(new, Mapping) else {}
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key, 0), new.get(key, 0)
        if before == after:
            continue
        if not _numbers(before, after):
            yield Change(MAJOR, f"{where}.{key}", f"changed {_pair(before, after)}")
        elif after > before:
            yield Change(MAJOR, f"{where}.{key}", f"loosened {before} -> {after}")
        else:
            yield Change(MINOR, f"{where}.{key}", f"tightened {before} -> {after}")


def _expression_changes(where: str, key: str, old: str | None, new: str | None) -> Iterator[Change]:
    """``expect``: removing a conjunct or widening its bound weakens the promise. ``assume``: the
    reverse, since adding an assumption or narrowing it leaves inputs unchecked."""
    weaker = {expect_diff.REMOVED, expect_diff.WIDENED} if key == "expect" else {expect_diff.ADDED, expect_diff.NARROWED}
    for change in expect_diff.expression_changes(old, new):
        level = MAJOR if change.kind in weaker or change.kind == expect_diff.CHANGED else MINOR
        if change.kind == expect_diff.REMOVED:
            what = f"removed conjunct {_shown(change.old)}"
        elif change.kind == expect_diff.ADDED:
            what = f"added conjunct {_shown(change.new)}"
        elif change.kind == expect_diff.CHANGED:
            what = f"changed {_pair(change.old, change.new)}"
        else:
            what = f"bound {change.kind} {_pair(change.old, change.new)}"
        yield Change(level, where, what)


def _given_changes(where: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    """An input's domain narrowed checks fewer inputs (major); widened, more (minor)."""
    for name in list(old) + [k for k in new if k not in old]:
        if old.get(name) != new.get(name):
            yield from _domain_changes(f"{where}.{name}", old.get(name), new.get(name))


def _domain_changes(where: str, old: Any, new: Any) -> Iterator[Change]:
    if isinstance(old, Mapping) and isinstance(new, Mapping) and set(old) == set(new):
        for key in old:
            if old[key] != new[key]:
                yield from _domain_changes(f"{where}.{key}", old[key], new[key])
        return
    leaf = where.rsplit(".", 1)[-1]
    if _numbers(old, new) and leaf in (*_DOMAIN_LOWER, *_DOMAIN_UPPER):
        widened = (new < old) if leaf in _DOMAIN_LOWER else (new > old)
        yield Change(MINOR if widened else MAJOR, where,
                     f"inputs {'widened' if widened else 'narrowed'} {old} -> {new}")
    elif old is None:
        yield Change(MAJOR, where, f"added {_shown(new)}")
    elif new is None:
        yield Change(MAJOR, where, f"removed (was {_shown(old)})")
    else:
        yield Change(MAJOR, where, f"changed {_pair(old, new)}")


# --- sections ------------------------------------------------------------------------------


def _section_items(section: str, old: ContractView, new: ContractView) -> Iterator[Change]:
    before = {item.key: item for item in old.items(section)}
    after = {item.key: item for item in new.items(section)}
    for key, item in before.items():
        if key not in after:
            yield Change(MAJOR, section, f"removed {key}")
        else:
            yield from _field_changes(section, f"{section}[{key}].", item.fields, after[key].fields)
    for key in after:
        if key not in before:
            yield Change(MINOR, section, f"added {key}")


def _gate(old: ContractView, new: ContractView) -> Iterator[Change]:
    if old.qa_gate is None or new.qa_gate is None:
        if (old.qa_gate is None) != (new.qa_gate is None):
            yield Change(MAJOR if new.qa_gate is None else MINOR, "qa_gate", "removed" if new.qa_gate is None else "added")
        return
    yield from _field_changes("qa_gate", "qa_gate.", {k: v for k, v in old.qa_gate.fields.items() if k != "require"},
                              {k: v for k, v in new.qa_gate.fields.items() if k != "require"})
    before = {r.falsifier: r.profiles for r in old.qa_gate.require}
    after = {r.falsifier: r.profiles for r in new.qa_gate.require}
    for falsifier, profiles in before.items():
        if falsifier not in after:
            yield Change(MAJOR, "qa_gate.require", f"removed {falsifier}")
        else:
            yield from _value_change(LIST, f"qa_gate.require[{falsifier}].profiles", profiles, after[falsifier])
    for falsifier in after:
        if falsifier not in before:
            yield Change(MINOR, "qa_gate.require", f"added {falsifier}")


def diff_contracts(old: ContractView, new: ContractView) -> list[Change]:
    """Every semantic change from ``old`` to ``new``."""
    changes: list[Change] = []
    for section in ITEM_SECTIONS:
        changes += _section_items(section, old, new)
    changes += _gate(old, new)
    changes += _field_changes("metadata", "metadata.", old.metadata, new.metadata)
    changes += _field_changes("", "", old.top, new.top)
    return changes


def suggested_level(changes: list[Change]) -> str:
    """The highest level among ``changes`` (``none`` for no change)."""
    return max((c.level for c in changes), key=LEVELS.index, default="none")


_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


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


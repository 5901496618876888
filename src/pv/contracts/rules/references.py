"""Reference rules: every name that points somewhere must point at something that exists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePath

from pv._util.text import short
from pv.contracts.findings import Location, Severity
from pv.contracts.requirements import parse_requirements
from pv.contracts.rules.registry import rule
from pv.contracts.rules.sections import depends_on, entries, is_contract, mapping, suggestion


def _short(text: str) -> str:
    return short(text)


@rule("PV-REF-001", Severity.ERROR,
      "Kani harness or falsification test names an obligation id that the contract does not have")
def obligation_reference(doc) -> Iterable[tuple[Location, str]]:
    ids = [ob["id"] for _, ob in entries(doc.data, "proof_obligations") if isinstance(ob.get("id"), str)]
    for section, kind in (("kani_harnesses", "Kani harness"), ("falsification_tests", "falsification test")):
        for index, item in entries(doc.data, section):
            target = item.get("obligation")
            if isinstance(target, str) and target not in ids:
                why = suggestion(target, ids) if ids else " (no proof obligation of this contract has an id)"
                yield doc.locate(section, index, "obligation"), (
                    f"{kind} `{item.get('id')}` names obligation `{_short(target)}`, which is not the id of a "
                    f"proof obligation of this contract{why}"
                )


@rule("PV-REF-002", Severity.ERROR, "depends_on names a contract that is not in the validated set", scope="corpus")
def missing_dependency(docs: Sequence) -> Iterable[tuple[Location, str]]:
    stems = {doc.stem for doc in docs if is_contract(doc.data)}
    for doc in docs:
        for index, stem in depends_on(doc.data):
            if stem not in stems:
                yield doc.locate("metadata", "depends_on", index), (
                    f"depends_on `{stem}`: no contract {stem}.yaml among the files validated{suggestion(stem, stems)}"
                )


@rule("PV-REF-003", Severity.ERROR, "depends_on forms a cycle", scope="corpus")
def dependency_cycle(docs: Sequence) -> Iterable[tuple[Location, str]]:
    from pv.contracts.graph import build_graph

    by_stem = {}
    for doc in docs:
        by_stem.setdefault(doc.stem, doc)
    for cycle in build_graph(docs).cycles():
        text = " -> ".join(cycle)
        for stem, target in zip(cycle, cycle[1:]):
            doc = by_stem[stem]
            index = next(i for i, dep in depends_on(doc.data) if dep == target)
            yield doc.locate("metadata", "depends_on", index), f"depends_on cycle: {text}"


@rule("PV-REF-004", Severity.ERROR, "qa_gate.require names a falsifier that the contract does not have")
def gate_requirement(doc) -> Iterable[tuple[Location, str]]:
    ids = [t["id"] for _, t in entries(doc.data, "falsification_tests") if isinstance(t.get("id"), str)]
    for requirement in parse_requirements(doc.data)[0]:
        target = requirement.falsifier
        if target not in ids:
            yield doc.locate("qa_gate", "require", requirement.index, "falsifier"), (
                f"qa_gate requires falsifier `{target}`, which is not a falsification_tests id of this contract"
                f"{suggestion(target, ids)}"
            )


@rule("PV-REF-005", Severity.ERROR, "binding names a contract or equation that is not in the validated set", scope="corpus")
def binding_target(docs: Sequence) -> Iterable[tuple[Location, str]]:
    contracts = {doc.stem: doc for doc in docs if is_contract(doc.data)}
    for doc in docs:
        if is_contract(doc.data):
            continue
        for index, binding in entries(doc.data, "bindings"):
            name, equation = binding.get("contract"), binding.get("equation")
            if not isinstance(name, str):
                continue
            target = contracts.get(PurePath(name).stem)
            if target is None:
                yield doc.locate("bindings", index, "contract"), (
                    f"binding names contract `{name}`, which is not among the files validated"
                    f"{suggestion(PurePath(name).stem, contracts)}"
                )
            elif isinstance(equation, str) and equation not in mapping(target.data, "equations"):
                known = mapping(target.data, "equations")
                yield doc.locate("bindings", index, "equation"), (
                    f"binding names equation `{equation}`, which {name} does not define{suggestion(equation, known)}"
                )

"""The rule registry: each rule is a function with a stable id, a severity and a summary.

A document rule is ``check(doc) -> Iterable[(Location, message)]``; a corpus rule
(``scope="corpus"``) sees every document validated together:
``check(docs) -> Iterable[(Location, message)]``. The registry turns each pair
into a :class:`~pv.contracts.findings.Finding` carrying the rule's id and severity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pv.contracts.findings import Finding, Location, Severity

Scope = Literal["document", "corpus"]
Check = Callable[[Any], Iterable[tuple[Location, str]]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str
    scope: Scope
    check: Check

    def findings(self, subject: Any) -> Iterator[Finding]:
        """Run the check on a document (or, for a corpus rule, a sequence of documents)."""
        for location, message in self.check(subject):
            yield Finding(self.id, self.severity, message, location)


RULES: dict[str, Rule] = {}


def rule(id: str, severity: Severity, summary: str, scope: Scope = "document") -> Callable[[Check], Check]:
    """Register ``check`` under ``id`` (ids are unique; registering one twice is a bug)."""

    def register(check: Check) -> Check:
        if id in RULES:
            raise ValueError(f"rule id {id} registered twice")
        RULES[id] = Rule(id, severity, summary, scope, check)
        return check

    return register


Analysis = Callable[[Any], Iterable[tuple[str, Location, str]]]


def rule_family(analysis: Analysis, rules: dict[str, tuple[Severity, str]], scope: Scope = "document") -> None:
    """Register one rule per id of ``rules`` (id -> (severity, summary)) over one ``analysis``
    that yields ``(rule id, location, message)``: each rule keeps the findings of its own id.

    For checks that find several kinds of problem in one pass (a schema, an expression
    parser); the analysis should keep its result with the document, as it runs once per rule.
    """
    for rule_id, (severity, summary) in rules.items():
        rule(rule_id, severity, summary, scope)(_findings_of(analysis, rule_id))


def _findings_of(analysis: Analysis, rule_id: str) -> Check:
    def check(subject: Any) -> list[tuple[Location, str]]:
        return [(location, message) for found_id, location, message in analysis(subject) if found_id == rule_id]

    return check


def document_rules(documents: Sequence[Any] | None = None) -> Sequence[Rule]:
    """The document rules needed for ``documents`` (all of them for None)."""
    return [r for r in all_rules(documents) if r.scope == "document"]


def corpus_rules(documents: Sequence[Any] | None = None) -> Sequence[Rule]:
    """The corpus rules needed for ``documents`` (all of them for None)."""
    return [r for r in all_rules(documents) if r.scope == "corpus"]


def all_rules(documents: Sequence[Any] | None = None) -> list[Rule]:
    """The registered rules, after importing the rule modules that ``documents`` need (all for None)."""
    from pv.contracts.rules import load_rule_modules

    load_rule_modules(documents)
    return sorted(RULES.values(), key=lambda r: r.id)

"""Validate a set of contract files together: load each, run every rule, collect findings.

All files are read in one process. Document rules see one document; corpus
rules see every document that loaded (for ids across contracts, ``depends_on``
and bindings). A rule that fails on some input is itself reported as a
finding (PV-INTERNAL-001), so that one broken rule never hides the others.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from pv.contracts.findings import Finding, Location, Severity
from pv.contracts.loading import Document, LoadError, collect_paths, load_document

INTERNAL = "PV-INTERNAL-001"


@dataclass
class ValidationResult:
    """What ``validate_paths`` found: loaded documents, rule findings, and files that could not be loaded."""

    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    load_errors: list[LoadError] = field(default_factory=list)

    def all_findings(self) -> list[Finding]:
        """Load errors and rule findings together, sorted by file, line, column and rule."""
        return sorted([e.finding for e in self.load_errors] + self.findings, key=_order)

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.all_findings())

    @property
    def warnings(self) -> int:
        return sum(f.severity is Severity.WARNING for f in self.all_findings())

    @property
    def files(self) -> int:
        return len(self.documents) + len(self.load_errors)

    def exit_code(self) -> int:
        """2 if a file could not be read at all, 1 if there is an error, else 0."""
        if any(e.exit_code == 2 for e in self.load_errors):
            return 2
        return 1 if self.errors else 0


def _order(finding: Finding) -> tuple:
    return (finding.location.path, finding.location.line, finding.location.col, finding.rule, finding.message)


def _run(rule, subject, fallback: Location) -> Iterable[Finding]:
    try:
        return list(rule.findings(subject))
    except Exception as err:  # a defect in a rule, reported instead of hiding every other finding
        return [Finding(INTERNAL, Severity.ERROR, f"rule {rule.id} failed: {type(err).__name__}: {err}", fallback)]


def _document_findings(doc: Document, rules) -> list[Finding]:
    where = Location(doc.path)
    return [finding for rule in rules for finding in _run(rule, doc, where)]


def _corpus_findings(docs: Sequence[Document]) -> list[Finding]:
    from pv.contracts.rules.registry import corpus_rules

    if not docs:
        return []
    return [finding for rule in corpus_rules(docs) for finding in _run(rule, docs, Location(docs[0].path))]


def validate_documents(docs: Sequence[Document]) -> list[Finding]:
    """Every finding of every rule over ``docs`` (validated together), sorted."""
    from pv.contracts.rules.registry import document_rules

    rules = document_rules(docs)
    found = [finding for doc in docs for finding in _document_findings(doc, rules)]
    return sorted(found + _corpus_findings(docs), key=_order)


def validate_paths(paths: Iterable[str | os.PathLike[str]], strict: bool = False) -> ValidationResult:
    """Load and validate every YAML file under ``paths``; ``strict`` turns warnings into errors.

    A path that does not exist is a :class:`~pv._util.errors.UserError`.
    """
    from pv.contracts.rules.registry import document_rules

    result = ValidationResult()
    collecting = gc.isenabled()
    gc.disable()  # plain data has no cycles to collect; scanning a growing heap cost a third of the time
    try:
        for path in collect_paths(paths):
            try:
                doc = load_document(path, keep_nodes=True)
            except LoadError as err:
                result.load_errors.append(err)
                continue
            result.documents.append(doc)
            result.findings += _document_findings(doc, document_rules([doc]))  # the node tree locates them,
            doc.release_nodes()  # then goes: one tree in memory at a time
        result.findings = sorted(result.findings + _corpus_findings(result.documents), key=_order)
    finally:
        if collecting:
            gc.enable()
    if strict:
        result.findings = [replace(f, severity=Severity.ERROR) for f in result.findings]
    return result

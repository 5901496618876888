"""Mutation evidence: a signed ``pv mutate`` report, its score recomputed, bound to the files it judged.

The gate never takes a report's word for its score. It reads the DSSE bundle
that ``pv mutate --format intoto`` writes (the ``MUTATION_REPORT`` statement),
checks its signature like a gate report's, recomputes the score from the
per-mutant list with the standard formula of the mutation-testing report schema,

    score = (killed + timeout) / (killed + timeout + survived + no-coverage),

(reviewed equivalents are left out, like the schema's ``Ignored``; mutants whose
run broke are counted apart and never help), and compares the digests of the
run's inputs (the mutated sources, the tests and contracts that judged them,
the equivalents file, the configuration) with the tree the gate decides on:
the working tree, or the commit a release names. Any difference makes the
evidence stale, named file by file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pv._util.errors import UserError
from pv.attest.envelopes import MUTATION_REPORT, Attestation, SignatureCheck, SignatureStatus, only, read_bundle
from pv.attest.inputs import InputRule, Tree, differences
from pv.attest.keys import TrustedKeys

#: the per-mutant statuses, by what they count as
DETECTED = ("killed", "timeout")
UNDETECTED = ("survived", "no-coverage")
IGNORED = ("equivalent",)
BROKEN = ("error",)
PENDING = ("not-run",)
KNOWN = DETECTED + UNDETECTED + IGNORED + BROKEN + PENDING


@dataclass
class MutationEvidence:
    """What the gate found in the project's mutation evidence."""

    path: str | None
    #: why it is no evidence (None: it is read and bound to the tree)
    absent: str | None = None
    signature: SignatureCheck | None = None
    counts: dict[str, int] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    #: the input files that differ from the tree (empty: the evidence is about this tree)
    changed: list[str] = field(default_factory=list)
    #: the git source of the run (``pv.attest.cleanroom.Source`` as JSON; None: not a clean-room run)
    source: dict[str, Any] | None = None

    @property
    def score(self) -> float | None:
        """(killed + timeout) / (killed + timeout + survived + no-coverage); None when no mutant decides."""
        detected = sum(self.counts.get(s, 0) for s in DETECTED)
        valid = detected + sum(self.counts.get(s, 0) for s in UNDETECTED)
        return detected / valid if valid else None

    @property
    def complete(self) -> bool:
        return not any(self.counts.get(s, 0) for s in PENDING)

    def describe_counts(self) -> str:
        """``N killed, N survived, ...`` of every status the run found, equivalents included."""
        return ", ".join(f"{n} {s}" for s in KNOWN if (n := self.counts.get(s, 0))) or "no mutant"

    def uncovered(self, bound: list[str]) -> list[str]:
        """The modules of ``bound`` (what a contract binds) that no mutated module covers."""
        return [m for m in bound if not any(m == j or m.startswith(j + ".") for j in self.modules)]


def _refused(path: str | None, why: str) -> MutationEvidence:
    return MutationEvidence(path, absent=why)


def _counts(mutants: Any, shown: str) -> Counter[str]:
    if not isinstance(mutants, list) or not all(isinstance(m, dict) for m in mutants):
        raise UserError(f"{shown}: its 'mutants' is not a list of mutants")
    counts: Counter[str] = Counter()
    for index, mutant in enumerate(mutants):
        status = mutant.get("status")
        if status not in KNOWN:
            raise UserError(f"{shown}: mutant {index} has status {status!r}, not one of {', '.join(KNOWN)}")
        counts[status] += 1
    return counts


def _equivalents_in_inputs(report: dict[str, Any], files: dict[str, str], shown: str) -> None:
    """The equivalents file, when the run used one, must be an input file of the project."""
    entry = (report.get("judged") or {}).get("equivalents")
    if not entry:
        return
    path = str(entry.get("path"))
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts or path not in files:
        raise UserError(f"{shown}: its equivalents file {path} is not a file of the project among the run's "
                        "inputs; reviewed equivalents count only from a file the project tracks")


def from_attestation(attestation: Attestation, shown: str, tree: Tree) -> MutationEvidence:
    """The evidence of one ``MUTATION_REPORT`` statement, bound to ``tree``."""
    report = attestation.predicate
    try:
        inputs = report["inputs"]
        files = {str(k): str(v) for k, v in inputs["files"].items()}
        rule = InputRule.from_json(inputs["rule"])
        modules = sorted(str(m["module"]) for m in report["modules"])
        counts = _counts(report["mutants"], shown)
    except (KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{shown}: not a pv mutate report with its inputs and mutants: "
                        f"{type(err).__name__}: {err}") from None
    if inputs.get("outside"):
        raise UserError(f"{shown}: the run used files outside the project: {', '.join(inputs['outside'])}")
    _equivalents_in_inputs(report, files, shown)
    source = report.get("git")
    return MutationEvidence(shown, signature=attestation.signature, counts=dict(counts), modules=modules,
                            changed=differences(files, tree, rule), source=source if isinstance(source, dict) else None)


def load_mutation_evidence(path: Path | None, shown: str | None, trusted: TrustedKeys, tree: Tree) -> MutationEvidence:
    """The project's mutation evidence at ``path`` (None: none configured), bound to ``tree``;
    a file that cannot serve is recorded with the reason, never an error of the gate."""
    if path is None:
        return _refused(None, "no mutation evidence configured ([tool.pv] mutation_report)")
    where = shown or str(path)
    try:
        attestation = only(read_bundle(path, trusted, where), MUTATION_REPORT, where)
        return from_attestation(attestation, where, tree)
    except UserError as err:
        return _refused(where, str(err))


def score_text(score: float) -> str:
    """A mutation score as the gate prints it: at most four decimals, no trailing zeros."""
    return f"{round(score, 4):g}"


def mutation_shortfall(evidence: MutationEvidence | None, min_score: float, bound: list[str],
                       release: bool) -> str | None:
    """Why ``evidence`` does not show a score of at least ``min_score`` over the modules ``bound``
    (None: it does). A release also needs it signed by a trusted key."""
    if evidence is None or evidence.absent is not None:
        return f"no mutation evidence ({evidence.absent if evidence else 'none given'})"
    if release and evidence.signature is not None and evidence.signature.status is not SignatureStatus.TRUSTED:
        return f"mutation evidence {evidence.path} is {evidence.signature.detail}: a release needs it signed by a trusted key"
    if release and not (evidence.source and evidence.source.get("cleanroom") and evidence.source.get("dirty") is False):
        return (f"mutation evidence {evidence.path} was not made in a clean room of a clean tree "
                "(pv mutate --format intoto on a clean checkout)")
    if evidence.changed:
        return f"mutation evidence {evidence.path} is stale: {', '.join(evidence.changed)}"
    if not evidence.complete:
        return f"mutation evidence {evidence.path} is incomplete: {evidence.counts['not-run']} mutant(s) not run"
    uncovered = evidence.uncovered(bound)
    if uncovered:
        return (f"mutation evidence {evidence.path} mutates none of {', '.join(uncovered)}, which the contract binds "
                f"(it mutated {', '.join(evidence.modules) or 'nothing'})")
    score = evidence.score
    if score is None:
        return f"mutation evidence {evidence.path} decides no mutant (no score)"
    if score < min_score:
        return f"score {score_text(score)} < {score_text(min_score)} in {evidence.path} ({evidence.describe_counts()})"
    return None

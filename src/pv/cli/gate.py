"""Decide each contract's QA gate, and the release, from gate reports.

Each REPORT is an evidence bundle written by `pv verify` (or `pytest
--pv-gate-report PATH`): DSSE envelopes of in-toto statements, pv's gate report
among them. A report that is not valid against pv's gate-report schema, repeats
an id, whose checksum or signature does not match its content (an edited
report), or that was made from another version of a contract, is refused. A report counts only under a
profile pv knows, with the same content hash, and only when the device it
records matches that profile. Reports from several runs (a CPU run and a GPU
run, several hosts) are merged.

A gate passes only when every falsifier its qa_gate requires passed on a
listed profile and killed its mutants, no falsifier failed or was vacuous
anywhere, every obligation with an executable check is proved or passed, every
obligation that falsifiers decide (falsification_tests[].obligation) has each of
them passed with its mutants killed, and (with qa_gate.min_mutation_score) a
the project's mutation evidence ([tool.pv] mutation_report, written by
`pv mutate --format intoto`) is complete, about the same files, mutates the
modules the contract binds, and scores at least that (recomputed from its
mutants, never read from it).
A requirement that no accepted report can decide fails ("no evidence").
Without --release, the gate is the gate for the reports' own profiles: the
requirements on other profiles are deferred (and a contract with none on
them fails). With --release every requirement is decided on the commit
released (--commit, default HEAD, read from git, not from the working tree):
each report must be a clean-room run (pv verify) of a clean tree whose input
files have exactly the bytes they have in that commit, and it and the mutation
evidence must be signed by a trusted key (--trusted-keys, default: the public
keys *.pub in keys/ of the project). --attest FILE writes the release verdict
as a signed SLSA verification summary listing the evidence it consumed.
Skipped, not-run and not-confirmed results, and a report of zero tests, are
never a pass. The output names, per gate, the report that decided each
requirement.

Without --contracts, the contracts folder of the project (`[tool.pv] contracts`)
is gated; outside any pv project that is an error (exit 2).

Exit status: 0 pass, 1 fail, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pv.attest.inputs import CommitTree
    from pv.evidence.contracts import ContractInfo



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT", help="gate report JSON files")
    parser.add_argument("--contracts", metavar="DIR", type=Path, default=None,
                        help="the contracts to gate (default: [tool.pv] contracts of the project)")
    parser.add_argument("--release", action="store_true",
                        help="decide the release: every required profile must be covered")
    parser.add_argument("--trusted-keys", metavar="PATH", type=Path, action="append", default=[],
                        help="a public key file (PEM) or a folder of *.pub files whose signatures are trusted; "
                             "repeatable (default: keys/ of the project)")
    parser.add_argument("--commit", metavar="REF", default=None,
                        help="with --release: the commit released (default: HEAD)")
    parser.add_argument("--attest", metavar="FILE", type=Path, default=None,
                        help="with --release: also write the verdict as a signed SLSA verification summary "
                             "(a DSSE bundle) to FILE")
    parser.add_argument("--format", choices=("text", "json", "markdown", "junit"), default="text")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the result to FILE instead of stdout")


def contracts_folder(option: Path | None, command: str = "pv gate") -> Path:
    """``option``, or the project's contracts folder; UserError when there is none or it is not a folder."""
    from pv._util.config import current
    from pv._util.errors import UserError

    if option is not None:
        if not option.is_dir():
            raise UserError(f"--contracts: {option} is not a folder")
        return option
    config = current().require(f"{command} without --contracts")
    assert config.contracts is not None
    if not config.contracts.is_dir():
        raise UserError(f"[tool.pv] contracts of {config.source or config.root}: {config.contracts} is not a folder")
    return config.contracts


def emit(text: str, output: str | None, inputs: list[str] | tuple[str, ...] = ()) -> None:
    """Print ``text``, or write it whole to ``output`` (never over one of the ``inputs``)."""
    if output is None:
        sys.stdout.write(text)
        return
    from pv._util.files import write_atomic

    write_atomic(output, text, inputs=inputs)


def run(args: argparse.Namespace) -> int:
    from pv._util.config import current
    from pv._util.errors import UserError
    from pv.attest.inputs import CommitTree, FolderTree
    from pv.attest.keys import trusted_keys
    from pv.evidence.contracts import load_contracts, shown_path
    from pv.evidence.gate import decide, load_report
    from pv.evidence.gate_output import FORMATTERS
    from pv.evidence.mutation_evidence import load_mutation_evidence

    if not args.release and (args.commit or args.attest):
        raise UserError("--commit and --attest decide a release: give --release too")
    folder = contracts_folder(args.contracts)
    config = current()
    root = config.root or Path.cwd()
    contracts = load_contracts(folder, Path.cwd())
    trusted = trusted_keys(args.trusted_keys)
    reports = [load_report(path, trusted) for path in args.reports]
    tree = CommitTree(root, args.commit or "HEAD") if args.release else FolderTree(root)
    evidence_path = config.mutation_report
    shown = shown_path(evidence_path, root) if evidence_path is not None else None
    mutation = load_mutation_evidence(evidence_path, shown, trusted, tree)
    decision = decide(reports, contracts, release=args.release, tree=tree, mutation=mutation)
    outputs = [*args.reports, *([str(evidence_path)] if evidence_path else [])]
    if args.attest is not None:
        _attest(args.attest, tree, decision.passed, contracts, args.reports, evidence_path, shown, outputs)
    emit(FORMATTERS[args.format](decision), args.output, outputs)
    return 0 if decision.passed else 1


def _attest(path: Path, tree: "CommitTree", passed: bool, contracts: Sequence["ContractInfo"], reports: list[str],
            evidence: Path | None, shown: str | None, inputs: list[str]) -> None:
    """Write the release verdict as a signed verification summary (``pv.evidence.release_summary``)."""
    from pv.attest.envelopes import envelope, write_bundle
    from pv.attest.keys import load_host_key
    from pv.evidence.release_summary import summary_statement

    consumed = [(report, Path(report)) for report in reports]
    if evidence is not None and evidence.is_file():
        consumed.append((shown or str(evidence), evidence))
    summary = summary_statement(tree.commit, passed, contracts, consumed)
    write_bundle(path, [envelope(summary, load_host_key())], inputs=inputs)

"""Decide each contract's QA gate, and the release, from gate reports.

Each REPORT (written by `pytest --gate-report PATH`) is validated against
schema/gate-report.schema.json; a report that repeats an id, whose checksum
or signature does not match its content (an edited report), or that was made
from another version of a contract, is refused. A report counts only under a
profile pv knows, with the same content hash, and only when the device it
records matches that profile. Reports from several runs (a CPU run and a GPU
run, several hosts) are merged.

A gate passes only when every falsifier its qa_gate requires passed on a
listed profile and killed its mutants, no falsifier failed or was vacuous
anywhere, and every obligation with an executable check is proved or passed.
A requirement that no accepted report can decide fails ("no evidence").
Without --release, the gate is the gate for the reports' own profiles: the
requirements on other profiles are deferred (and a contract with none on
them fails). With --release every requirement is decided, the reports must
come from one clean commit, and each must be signed by a trusted key
(--trusted-keys, default: the public keys *.pub in keys/ of the project).
Skipped, not-run and not-confirmed results, and a report of zero tests, are
never a pass. The output names, per gate, the report that decided each
requirement.

Exit status: 0 pass, 1 fail, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pv._util.locations import repo_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT", help="gate report JSON files")
    parser.add_argument("--contracts", metavar="DIR", type=Path, default=None,
                        help="the contracts to gate (default: contracts/ of the repository)")
    parser.add_argument("--release", action="store_true",
                        help="decide the release: every required profile must be covered")
    parser.add_argument("--trusted-keys", metavar="PATH", type=Path, action="append", default=[],
                        help="a public key file (PEM) or a folder of *.pub files whose signatures are trusted; "
                             "repeatable (default: keys/ of the project)")
    parser.add_argument("--format", choices=("text", "json", "markdown", "junit"), default="text")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the result to FILE instead of stdout")


def contracts_folder(option: Path | None) -> Path:
    """``option``, or ``contracts/`` of the repository; UserError when it is not a folder."""
    from pv._util.errors import UserError

    folder = option if option is not None else repo_root() / "contracts"
    if not folder.is_dir():
        raise UserError(f"--contracts: {folder} is not a folder")
    return folder


def emit(text: str, output: str | None, inputs: list[str] | tuple[str, ...] = ()) -> None:
    """Print ``text``, or write it whole to ``output`` (never over one of the ``inputs``)."""
    if output is None:
        sys.stdout.write(text)
        return
    from pv._util.files import write_atomic

    write_atomic(output, text, inputs=inputs)


def run(args: argparse.Namespace) -> int:
    from pv.evidence.gate import decide, load_report
    from pv.evidence.contracts import load_contracts
    from pv.evidence.gate_output import FORMATTERS
    from pv.evidence.signing import trusted_keys

    folder = contracts_folder(args.contracts)
    contracts = load_contracts(folder, Path.cwd())
    trusted = trusted_keys(args.trusted_keys)
    reports = [load_report(path, trusted) for path in args.reports]
    decision = decide(reports, contracts, release=args.release)
    emit(FORMATTERS[args.format](decision), args.output, args.reports)
    return 0 if decision.passed else 1

"""Decide each contract's QA gate, and the release, from gate reports.

Each REPORT (written by `pytest --pv-gate-report PATH`) is validated against
pv's gate-report schema; a report that repeats an id, whose checksum
or signature does not match its content (an edited report), or that was made
from another version of a contract, is refused. A report counts only under a
profile pv knows, with the same content hash, and only when the device it
records matches that profile. Reports from several runs (a CPU run and a GPU
run, several hosts) are merged.

A gate passes only when every falsifier its qa_gate requires passed on a
listed profile and killed its mutants, no falsifier failed or was vacuous
anywhere, every obligation with an executable check is proved or passed, every
obligation that falsifiers decide (falsification_tests[].obligation) has each of
them passed with its mutants killed, and (with qa_gate.min_mutation_score) a
report's mutation evidence is complete, not stale, and scores at least that.
A requirement that no accepted report can decide fails ("no evidence").
Without --release, the gate is the gate for the reports' own profiles: the
requirements on other profiles are deferred (and a contract with none on
them fails). With --release every requirement is decided, the reports must
come from one clean commit, and each must be signed by a trusted key
(--trusted-keys, default: the public keys *.pub in keys/ of the project).
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
from pathlib import Path



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT", help="gate report JSON files")
    parser.add_argument("--contracts", metavar="DIR", type=Path, default=None,
                        help="the contracts to gate (default: [tool.pv] contracts of the project)")
    parser.add_argument("--release", action="store_true",
                        help="decide the release: every required profile must be covered")
    parser.add_argument("--trusted-keys", metavar="PATH", type=Path, action="append", default=[],
                        help="a public key file (PEM) or a folder of *.pub files whose signatures are trusted; "
                             "repeatable (default: keys/ of the project)")
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

"""Automatic first-order mutants of the bound and covered code; each must make a test fail.

Mutates every function a contract binds (``implementation:``, check
``constants:``) and every scope a falsifier declares with
``@pytest.mark.falsifies(..., covers=[...])``; runs each mutant against the
tests that reach it (found by a first, traced run) in parallel workers, each
with a timeout, and prints a table per module: generated, killed, survived,
timed out, equivalent (reviewed in the equivalents file, a reason each) and
the score killed / (killed + survived). Exits 1 when the score is under
--min-score, an equivalents entry is stale, or a test fails unmutated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from pv._util.errors import UserError

DEFAULT_TESTS = ("falsifiers", "contracts")
DEFAULT_EQUIVALENTS = Path("mutants/equivalent.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tests", nargs="*", metavar="PATH",
                        help="test files or folders whose tests may kill mutants "
                             f"(default: those of {', '.join(DEFAULT_TESTS)} that exist)")
    parser.add_argument("--contracts", type=Path, default=Path("contracts"), metavar="DIR",
                        help="folder of the contracts whose bindings are mutated (default: contracts)")
    parser.add_argument("--module", dest="only", action="append", default=[], metavar="MODULE",
                        help="mutate only modules named MODULE or below it (repeatable)")
    parser.add_argument("--equivalents", type=Path, default=DEFAULT_EQUIVALENTS, metavar="FILE",
                        help=f"reviewed equivalent mutants (default: {DEFAULT_EQUIVALENTS})")
    parser.add_argument("-j", "--workers", type=_positive(int), default=2, metavar="N",
                        help="parallel mutant workers (default: 2)")
    parser.add_argument("-m", dest="markexpr", metavar="MARKEXPR", help="pytest marker expression selecting tests")
    parser.add_argument("--timeout-scale", type=_positive(float), default=3.0, metavar="X",
                        help="a mutant's tests time out after X times their unmutated seconds, plus 10 s (default: 3)")
    parser.add_argument("--fresh-imports", action="store_true",
                        help="run every mutant with its module imported afresh, instead of swapping mutated "
                             "functions into a collected session (slower; the reference for the fast path)")
    parser.add_argument("--check-equivalents", action="store_true",
                        help="run the mutants listed in the equivalents file too, to find entries a test now kills")
    parser.add_argument("--min-score", type=_score, metavar="S", help="exit 1 when the score is below S (0..1)")
    parser.add_argument("--rescore", type=Path, metavar="REPORT",
                        help="run nothing: judge a JSON report of an earlier run again under the equivalents file")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the report to FILE instead of stdout")


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
        return value

    return parse


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {value}")
    return value


class _Progress:
    """Counts and elapsed time on one terminal line (a line every 30 s when not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, counts: Counter[str], total: int, elapsed: float) -> None:
        done = sum(counts.values())
        line = (f"pv mutate: {done}/{total} mutants  killed {counts['killed']}  survived {counts['survived']}  "
                f"timeout {counts['timeout']}  equivalent {counts['equivalent']}  error {counts['error']}  "
                f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}]")
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done == total or time.monotonic() - self.last >= 30:
            self.last = time.monotonic()
            print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pv._util.files import write_atomic
    from pv.mutation.report import MutationReport, report_problems
    from pv.mutation.run import run_mutation
    from pv.mutation.targets import scopes_from_contracts

    if args.rescore is not None:
        return _rescore(args)

    tests = args.tests or [path for path in DEFAULT_TESTS if Path(path).exists()]
    missing = [path for path in tests if not Path(path.split("::")[0]).exists()]
    if missing or not tests:
        raise UserError(f"no such test file or folder: {', '.join(missing) or ', '.join(DEFAULT_TESTS)}")
    if args.equivalents != DEFAULT_EQUIVALENTS and not args.equivalents.exists():
        raise UserError(f"{args.equivalents}: no such equivalents file")
    pytest_args = ["-m", args.markexpr] if args.markexpr else []

    def render(report: MutationReport) -> str:
        return json.dumps(report.to_json(), indent=1) if args.format == "json" else report.table()

    def checkpoint(report: MutationReport) -> None:  # a long run leaves its counts so far in -o FILE
        if args.output:
            write_atomic(args.output, render(report) + "\n")

    report = run_mutation(
        tests, scopes_from_contracts(args.contracts), Path.cwd().resolve(), only=args.only,
        equivalents_path=args.equivalents, workers=args.workers, pytest_args=pytest_args,
        progress=_Progress(), note=lambda line: print(f"pv mutate: {line}", file=sys.stderr, flush=True),
        timeout_scale=args.timeout_scale, checkpoint=checkpoint, live=not args.fresh_imports,
        check_equivalents=args.check_equivalents)
    text = render(report)
    if args.output:
        write_atomic(args.output, text + "\n")
    else:
        print(text)
    problems = report_problems(report, args.min_score)
    for problem in problems:
        print(f"pv mutate: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _rescore(args: argparse.Namespace) -> int:
    from pv._util.files import write_atomic
    from pv.mutation.equivalents import load_equivalents
    from pv.mutation.formats import format_table
    from pv.mutation.report import rescore

    try:
        data = json.loads(args.rescore.read_text(encoding="utf-8"))
        data["mutants"], data["modules"]  # noqa: B018 - the keys a report has
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{args.rescore}: not a report of pv mutate --format json ({err})") from None
    judged = rescore(data, load_equivalents(args.equivalents), args.equivalents)
    text = json.dumps(judged, indent=1) if args.format == "json" else format_table(judged)
    if args.output:
        write_atomic(args.output, text + "\n")
    else:
        print(text)
    problems = list(judged["stale_equivalents"])
    if args.min_score is not None and (judged["score"] is None or judged["score"] < args.min_score):
        problems.append(f"mutation score {judged['score']} is below the minimum {args.min_score}")
    for problem in problems:
        print(f"pv mutate: {problem}", file=sys.stderr)
    return 1 if problems else 0

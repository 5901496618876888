"""Automatic first-order mutants of the bound and covered code; each must make a test fail.

Mutates every function a contract binds (``implementation:``, check
``constants:``) and every scope a falsifier declares with
``@pytest.mark.falsifies(..., covers=[...])``; runs each mutant against the
tests that reach it (found by a first, traced run) in parallel workers, each
with a timeout, and prints a table per module: generated, killed, survived,
timed out, equivalent (reviewed in the equivalents file, a reason each) and
the score killed / (killed + survived + no coverage). Exits 1 when the score is
under --min-score, an equivalents entry is stale, or a test fails unmutated.
--format json keeps every mutant and the sha256 of every input; --format
intoto writes the same report as evidence: an in-toto statement in a DSSE
envelope signed by this host's key, from a run in a clean-room export of the
commit (what `[tool.pv] mutation_report` names for the gate; docs/trust.md);
--format stryker writes the ecosystem's shared report format, --format html one
page with each mutant's diff; --show KEY prints one mutant's diff;
--audit-equivalents tries each listed equivalent against the original on
generated inputs (docs/mutation.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pv._util.errors import UserError

DEFAULT_TESTS = ("falsifiers", "contracts")
DEFAULT_EQUIVALENTS = Path("mutants/equivalent.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tests", nargs="*", metavar="PATH",
                        help="test files or folders whose tests may kill mutants (default: [tool.pv] "
                             f"mutation_tests, else those of {', '.join(DEFAULT_TESTS)} that exist); "
                             "a project's unit tests may be among them")
    parser.add_argument("--contracts", type=Path, default=Path("contracts"), metavar="DIR",
                        help="folder of the contracts whose bindings are mutated (default: contracts)")
    parser.add_argument("--module", dest="only", action="append", default=[], metavar="MODULE",
                        help="mutate only modules named MODULE or below it (repeatable)")
    parser.add_argument("--sample", type=_positive(int), metavar="N",
                        help="run only a random sample of N of the mutants a test reaches, and estimate the "
                             "score with a 95%% interval (the report is not complete evidence for a gate)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="the seed --sample draws with (default: 0)")
    parser.add_argument("--include", action="append", default=[], metavar="MODULE",
                        help="also mutate all of MODULE (a package: every module in it), whether or not a "
                             "contract binds it or a falsifier covers it (repeatable)")
    parser.add_argument("--equivalents", type=Path, default=DEFAULT_EQUIVALENTS, metavar="FILE",
                        help=f"reviewed equivalent mutants (default: {DEFAULT_EQUIVALENTS})")
    parser.add_argument("-j", "--workers", type=_positive(int), default=2, metavar="N",
                        help="parallel mutant workers (default: 2)")
    parser.add_argument("-m", dest="markexpr", metavar="MARKEXPR", help="pytest marker expression selecting tests")
    parser.add_argument("--timeout-scale", type=_positive(float), default=3.0, metavar="X",
                        help="each of a mutant's tests times out after X times its own unmutated seconds, plus 10 s "
                             "(default: 3)")
    parser.add_argument("--fresh-imports", action="store_true",
                        help="run every mutant with its module imported afresh, instead of swapping mutated "
                             "functions into a collected session (slower; the reference for the fast path)")
    parser.add_argument("--check-equivalents", action="store_true",
                        help="run the mutants listed in the equivalents file too, to find entries a test now kills")
    parser.add_argument("--min-score", type=_score, metavar="S", help="exit 1 when the score is below S (0..1)")
    parser.add_argument("--rescore", type=Path, metavar="REPORT",
                        help="run nothing: judge a JSON report of an earlier run again under the equivalents file")
    parser.add_argument("--format", choices=("table", "json", "intoto", "stryker", "html"), default="table",
                        help="table (text), json (pv's report: every mutant, every input's sha256), intoto (that "
                             "report as signed evidence, from a clean-room run), stryker "
                             "(mutation-testing-report-schema 1), html (one page, each mutant's diff)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--memory-fraction", type=_fraction, default=0.5, metavar="F",
                        help="the share of the machine's memory all mutant processes together may grow by; "
                             "a mutant past it is an error (memory) (default: 0.5)")
    parser.add_argument("--incremental", type=Path, metavar="REPORT",
                        help="reuse the results of an earlier --format json report for every mutant whose cache key "
                             "(its definition's text, its tests' files, pv's version) is unchanged")
    parser.add_argument("--since", metavar="REF",
                        help="mutate only the top-level definitions whose text changed since the git commit REF")
    parser.add_argument("--show", metavar="KEY",
                        help="run nothing: print the unified diff of the mutant KEY (module:scope:operator:n)")
    parser.add_argument("--audit-equivalents", action="store_true",
                        help="run nothing but the listed equivalents: each against the original on generated "
                             "inputs; list those whose outputs, exceptions or gradients differ (exit 1)")
    parser.add_argument("--examples", type=_positive(int), default=60, metavar="N",
                        help="generated inputs per equivalent for --audit-equivalents (default: 60)")


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction of the memory, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {value}")
    return value


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {value}")
    return value


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does: temporary folders are removed on the way out."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _render(data: dict[str, Any], sources: dict[str, str], fmt: str) -> str:
    from pv.mutation.formats import format_table
    from pv.mutation.html import html_page
    from pv.mutation.stryker import stryker_report

    if fmt == "json":
        return json.dumps(data, indent=1)
    if fmt == "intoto":
        return _evidence(data)
    if fmt == "stryker":
        return json.dumps(stryker_report(data, sources), indent=1)
    if fmt == "html":
        return html_page(data, sources)
    return format_table(data, sources)


def _evidence(data: dict[str, Any]) -> str:
    """A report as evidence: one DSSE envelope (JSON Lines) of its in-toto statement, signed by this host's key."""
    from pv.attest.envelopes import MUTATION_REPORT, envelope, file_subjects, statement
    from pv.attest.keys import load_host_key

    subject = file_subjects(data["inputs"]["files"])
    return json.dumps(envelope(statement(subject, MUTATION_REPORT, data), load_host_key()), sort_keys=True)


def run(args: argparse.Namespace) -> int:
    if args.show is not None:
        return _show(args.show)
    if args.audit_equivalents:
        return _audit(args)
    if args.rescore is not None:
        return _rescore(args)
    if args.format == "intoto":
        return _mutate_in_clean_room(args)
    return _mutate(args)


@contextmanager
def _inside(room: Any) -> Iterator[None]:
    """Work in the clean room: its folder as the working directory, its modules found there first (from
    its pytest ``pythonpath`` too), its Python environment for every process started, no bytecode written."""
    import os

    from pv._util.config import pytest_pythonpath
    from pv.attest.cleanroom import python_environment

    before = (Path.cwd(), dict(os.environ), sys.dont_write_bytecode, sys.pycache_prefix, list(sys.path))
    found = [str(path) for path in pytest_pythonpath(room.project)]
    os.chdir(room.project)
    os.environ.update(python_environment(room, {}))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [*found, os.environ.get("PYTHONPATH")]))
    sys.path[:0] = found
    sys.dont_write_bytecode, sys.pycache_prefix = True, str(room.pycache)
    try:
        yield
    finally:
        os.chdir(before[0])
        os.environ.clear()
        os.environ.update(before[1])
        sys.dont_write_bytecode, sys.pycache_prefix = before[2], before[3]
        sys.path[:] = before[4]


def _mutate_in_clean_room(args: argparse.Namespace) -> int:
    """``--format intoto``: the run happens in a clean-room export of the project, paths mapped into it,
    and the evidence records the git source it came from."""
    import copy

    from pv.attest.cleanroom import clean_room
    from pv.attest.inputs import InputRule, relative_input

    root = project_root()

    def moved(path: Path, room: Path) -> Path:
        return room / relative_input(Path.cwd() / path, root, "an input of pv mutate")

    tests = args.tests or configured_tests() or [path for path in DEFAULT_TESTS if Path(path).exists()]
    with clean_room(root, InputRule(folders=(".",))) as room:
        inside = copy.copy(args)
        inside.tests = [str(moved(Path(t.split("::")[0]), room.project)) + t[len(t.split("::")[0]):] for t in tests]
        inside.contracts = moved(args.contracts, room.project)
        inside.equivalents = moved(args.equivalents, room.project)
        inside.output = args.output.resolve() if args.output is not None else None
        inside.incremental = args.incremental.resolve() if args.incremental is not None else None
        with _inside(room):
            return _mutate(inside, room.source.to_json())


def _mutate(args: argparse.Namespace, source: dict[str, Any] | None = None) -> int:
    """Run the mutants and write the report (``source``: the git source of a clean-room run, recorded)."""
    from pv._util.files import write_atomic
    from pv._util.progress import LOG_EVERY_S, Progress
    from pv.mutation.report import MutationReport, report_problems
    from pv.mutation.run import run_mutation
    from pv.mutation.targets import scopes_from_contracts, whole_modules

    tests = args.tests or configured_tests() or [path for path in DEFAULT_TESTS if Path(path).exists()]
    missing = [path for path in tests if not Path(path.split("::")[0]).exists()]
    if missing or not tests:
        raise UserError(f"no such test file or folder: {', '.join(missing) or ', '.join(DEFAULT_TESTS)}")
    if args.equivalents != DEFAULT_EQUIVALENTS and not args.equivalents.exists():
        raise UserError(f"{args.equivalents}: no such equivalents file")
    pytest_args = ["-m", args.markexpr] if args.markexpr else []
    included = set().union(*(whole_modules(name) for name in args.include))

    def render(report: MutationReport) -> str:
        return _render(report.to_json() | {"git": source}, report.sources(), args.format)

    def checkpoint(report: MutationReport) -> None:  # a long run leaves its counts so far in -o FILE
        if args.output:
            write_atomic(args.output, render(report) + "\n")

    with _stopped_by_signals(), Progress("pv mutate", log_every_s=LOG_EVERY_S) as bar:
        def progress(counts: Counter[str], total: int, elapsed: float) -> None:
            bar.update(sum(counts.values()), total, "  ".join(f"{status} {counts[status]}" for status in (
                "killed", "survived", "no-coverage", "timeout", "equivalent", "error")))

        def note(line: str) -> None:
            bar.print(f"pv mutate: {line}", file=sys.stderr)
            bar.detail = line

        report = run_mutation(
            tests, scopes_from_contracts(args.contracts) | included, project_root(), only=args.only,
            equivalents_path=args.equivalents, workers=args.workers, pytest_args=pytest_args,
            progress=progress, note=note, timeout_scale=args.timeout_scale, checkpoint=checkpoint,
            live=not args.fresh_imports, check_equivalents=args.check_equivalents, contracts=args.contracts,
            output=args.output, memory_fraction=args.memory_fraction, previous=args.incremental,
            since_ref=args.since, sample=args.sample, seed=args.seed)
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
    if args.output is not None and args.output.resolve() == args.equivalents.resolve():
        raise UserError(f"{args.output}: -o names the equivalents file this rescore reads; write the report elsewhere")
    if args.format not in ("table", "json"):
        raise UserError(f"--rescore writes table or json, not {args.format} (run pv mutate for that format)")
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


def configured_tests() -> list[str]:
    """``[tool.pv] mutation_tests``, relative to the working directory where they are below it."""
    from pv._util.config import load_config

    found = []
    for path in load_config().mutation_tests:
        try:
            found.append(str(path.relative_to(Path.cwd().resolve())))
        except ValueError:
            found.append(str(path))
    return found


def project_root() -> Path:
    """The configured project's folder (``[tool.pv]``, ``--root``), else the working directory."""
    from pv._util.config import load_config

    root = (load_config().root or Path.cwd()).resolve()
    if str(root) not in sys.path:  # the project's modules import however pv is installed
        sys.path.insert(0, str(root))
    return root


def _show(key: str) -> int:
    from pv.mutation.generation import unified_diff
    from pv.mutation.targets import find_site

    target, site = find_site(key, project_root())
    print(unified_diff(target.source, site, target.path.relative_to(project_root()).as_posix()
                       if target.path.is_relative_to(project_root()) else target.path.as_posix()), end="")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from pv.mutation.audit import audit_equivalents, format_audit
    from pv.mutation.equivalents import load_equivalents
    from pv.attest.inputs import relative_input

    root = project_root()
    relative_input(args.equivalents, root, "equivalents file")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    entries = load_equivalents(args.equivalents)
    if args.only:
        entries = {key: entry for key, entry in entries.items()
                   if any(key.startswith(prefix + ":") or key.startswith(prefix + ".") for prefix in args.only)}
    findings = audit_equivalents(entries, root, args.examples)
    print(format_audit(findings))
    return 1 if any(finding.differs for finding in findings) else 0

"""Run the compiled checks of contract obligations in this process and print one verdict per
obligation and engine. Exit 1 if any verdict is refuted, error, vacuous or not-confirmed (and,
with --require-checks, if an obligation has no check); 0 otherwise; 2 for bad arguments.

A not-confirmed run of one of several engines of an obligation (CrossHair out of budget beside
a Hypothesis search) is printed as inconclusive and does not fail: the other engines decide,
and it is never a proof. A progress bar runs on stderr when it is a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pv._util.errors import UserError
from pv.contracts.engines import ENGINE_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="contract files or folders")
    parser.add_argument("--engine", choices=ENGINE_NAMES, help="run only this engine (not-applicable where it cannot)")
    parser.add_argument("--obligation", action="append", default=[], metavar="ID", help="only these obligation ids")
    parser.add_argument("--replay", metavar="JSON", help="judge one input (a counterexample's inputs) of one obligation")
    parser.add_argument("--allow-module", action="append", default=[], metavar="PREFIX",
                        help="also allow bindings from modules under PREFIX (beside [tool.pv] modules)")
    parser.add_argument("--crosshair-total", type=float, default=None, metavar="SECONDS",
                        help="CrossHair time for the whole run (default 60)")
    parser.add_argument("--require-checks", action="store_true", help="an obligation without a check fails")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _replay_inputs(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        inputs = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--replay: not JSON: {err}") from None
    if not isinstance(inputs, dict):
        raise UserError("--replay: expected a JSON object of input name -> value")
    return inputs


def _engines(compiled, forced: str | None) -> tuple:
    """The engines to run for one obligation: the forced one, its own, or none (unchecked)."""
    if forced and compiled.checked:
        return (forced,)
    return compiled.engines or (None,)


def _row(verdict, widths: tuple[int, int, int], inconclusive: bool) -> str:
    name = f"{verdict.contract}::{verdict.obligation}"
    note = " (inconclusive: not counted, the other engines decide; not a proof)" if inconclusive else ""
    return (f"{name:<{widths[0]}}  {verdict.engine:<{widths[1]}}  {verdict.status.value:<{widths[2]}}"
            f"  {verdict.duration_s:7.2f}s  {verdict.detail}{note}")


def run(args: argparse.Namespace) -> int:
    from pv._util.progress import Progress
    from pv.checks.compiling import collect_contracts, compile_document, fails, format_verdict, inconclusive, run_check
    from pv.checks.engines import crosshair_engine
    from pv.checks.verdicts import Status

    replay = _replay_inputs(args.replay)
    if args.crosshair_total is not None:
        if args.crosshair_total <= 0:
            raise UserError("--crosshair-total must be > 0")
        crosshair_engine.set_total_budget(args.crosshair_total)
    found = collect_contracts(args.paths)
    compiled = [c for doc in found.documents for c in compile_document(doc)]
    if args.obligation:
        unknown = sorted(set(args.obligation) - {c.obligation for c in compiled})
        if unknown:
            raise UserError(f"--obligation: no obligation {', '.join(unknown)} in the given contracts")
        compiled = [c for c in compiled if c.obligation in args.obligation]
    if replay is not None and len(compiled) != 1:
        raise UserError("--replay needs exactly one obligation (use --obligation ID)")

    jobs = [(c, engine) for c in compiled for engine in _engines(c, args.engine)]
    widths = (
        max((len(f"{c.contract}::{c.obligation}") for c, _ in jobs), default=0),
        max((len(e or "none") for _, e in jobs), default=0) + 2,
        14,
    )
    text = args.format == "text"
    for error in found.load_errors:
        print(f"cannot load: {error}", file=sys.stderr)
    started = time.perf_counter()
    verdicts, failed, unsettled = [], [], []
    with Progress("pv check", total=len(jobs)) as progress:
        for check, engine in jobs:
            verdict = run_check(check, engine, allow=args.allow_module, replay=replay)
            engines = _engines(check, args.engine)
            verdicts.append(verdict)
            if fails(verdict, engines) or (args.require_checks and verdict.status == Status.UNCHECKED):
                failed.append(verdict)
            if inconclusive(verdict, engines):
                unsettled.append(f"{verdict.contract}::{verdict.obligation}[{verdict.engine}]")
            if text:
                progress.print(_row(verdict, widths, inconclusive(verdict, engines)))
            progress.advance()
    elapsed = time.perf_counter() - started
    if text:
        counts = {status.value: sum(v.status == status for v in verdicts) for status in Status}
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        print(f"\n{len(verdicts)} verdicts in {elapsed:.1f} s: {summary}"
              + (f"; {len(found.not_contracts)} YAML files are not contracts" if found.not_contracts else ""))
        for verdict in failed:
            print("\n" + format_verdict(verdict))
    else:
        json.dump({"verdicts": [v.to_json() for v in verdicts], "inconclusive": unsettled,
                   "failed": len(failed), "seconds": round(elapsed, 3),
                   "load_errors": found.load_errors, "not_contracts": found.not_contracts}, sys.stdout, indent=2)
        print()
    return 1 if failed or found.load_errors else 0

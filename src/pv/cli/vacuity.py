"""Run every falsifier against each mutant it names: a mutant must make its falsifier fail.

Prints a table falsifier x mutant x result and exits 0 only when at least one
mutant run executed and every mutant was killed by a falsifier that passes
unmutated. While pytest runs, a progress bar (test runs finished of those
collected, elapsed time) is drawn on stderr when it is a terminal. A surviving mutant (the falsifier is vacuous), a skipped or erroring
mutant run, or an unmutated falsifier that does not pass exits 1. Without
-m on a machine without CUDA, the gpu falsifiers are deselected (said so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pv._util.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="falsifier files or folders (default: [tool.pv] falsifiers of the project)")
    parser.add_argument("-m", dest="markexpr", metavar="MARKEXPR",
                        help="pytest marker expression selecting falsifiers (default: all; "
                             "'not gpu' where no CUDA device is present)")
    parser.add_argument("-n", dest="workers", metavar="N", type=_workers,
                        help="run in N pytest-xdist worker processes")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print pytest's output")


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of workers >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from pv._util.progress import LOG_EVERY_S, Progress
    from pv.evidence import vacuity

    if args.paths:
        paths = args.paths
    else:
        from pv._util.config import current

        paths = [str(path) for path in current().require("pv vacuity without PATH").falsifiers]
    missing = [path for path in paths if not Path(path.split("::")[0]).exists()]
    if missing:
        raise UserError(f"no such falsifier file or folder: {', '.join(missing)}")
    markexpr = args.markexpr
    if markexpr is None and not _cuda_available():
        markexpr = "not gpu"
        print("pv vacuity: note: no CUDA device: gpu falsifiers deselected (-m 'not gpu'); "
              "run on a GPU host to check their mutants", file=sys.stderr, flush=True)
    print(f"pv vacuity: running {' '.join(paths)} once unmutated and once per mutant (pytest --pv-vacuity)",
          file=sys.stderr, flush=True)
    with Progress("pv vacuity: test runs", log_every_s=LOG_EVERY_S) as progress:
        outcome = vacuity.run_vacuity(paths, markexpr, args.workers,
                                      on_progress=lambda done, total: progress.update(done, total or None))
    problems = outcome.result.problems()
    if args.verbose or outcome.exit_code not in (0, 1, 5):
        print(outcome.output, file=sys.stderr)
    if outcome.result.rows:
        print(vacuity.format_table(outcome.result))
    if outcome.exit_code not in (0, 1, 5):
        problems.append(f"pytest exited {outcome.exit_code} (collection or usage error; its output is above)")
    for problem in problems:
        print(f"pv vacuity: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())

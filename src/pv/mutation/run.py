"""The whole of ``pv mutate``: targets, first run, plan, mutant runs, report."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pv._util.errors import UserError
from pv.mutation.equivalents import load_equivalents
from pv.mutation.execution import TIMEOUT_SCALE, TIMEOUT_SLACK_S, Progress, run_mutants
from pv.mutation.report import MutationReport, judged_files
from pv.mutation.results import Mutant
from pv.mutation.selection import first_run, plan
from pv.mutation.targets import resolve_targets

CACHE_ENV = "PV_MUTATE_CACHE"


def run_mutation(tests: Sequence[str], scopes: Iterable[str], root: Path, *, only: Sequence[str] = (),
                 equivalents_path: Path | None = None, workers: int = 2, pytest_args: Sequence[str] = (),
                 progress: Progress | None = None, note: Callable[[str], None] = lambda line: None,
                 timeout_scale: float = TIMEOUT_SCALE, timeout_slack: float = TIMEOUT_SLACK_S,
                 checkpoint: Callable[[MutationReport], None] | None = None,
                 checkpoint_every_s: float = 60.0, live: bool = True,
                 check_equivalents: bool = False) -> MutationReport:
    """The whole of ``pv mutate``: targets, first run, plan, mutant runs, report."""
    started = time.monotonic()
    equivalents = load_equivalents(equivalents_path)
    with tempfile.TemporaryDirectory(prefix="pv-mutate-cache-") as cache:
        env = {**os.environ, CACHE_ENV: cache, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        collected = first_run(tests, [], pytest_args, env, collect_only=True)
        declared = {scope for entry in collected.tests.values() for scope in entry["covers"]}
        targets = resolve_targets(set(scopes) | declared, root, only)
        if only:  # mutants run in the order of the modules asked for
            targets.sort(key=lambda t: next(i for i, p in enumerate(only) if t.module == p or t.module.startswith(p + ".")))
        if not targets:
            raise UserError("nothing to mutate: no contract binds a function and no falsifier declares covers"
                            + (f" under {', '.join(only)}" if only else ""))
        note(f"first run of {' '.join(tests)} under the line tracer "
             f"({', '.join(t.module for t in targets)})")
        judged = judged_files([t.path for t in targets], root, equivalents_path)
        baseline = first_run(tests, [t.path for t in targets], pytest_args, env, workers=workers)
        mutants = plan(targets, baseline)
        note(f"{len(mutants)} mutants; {len(baseline.passed())} tests passed unmutated "
             f"({baseline.seconds:.0f} s); running with {workers} workers")
        last = [time.monotonic()]

        def finished(mutant: Mutant) -> None:
            if checkpoint and time.monotonic() - last[0] >= checkpoint_every_s:
                last[0] = time.monotonic()
                checkpoint(MutationReport(mutants, equivalents, baseline, last[0] - started, workers, judged))

        run_mutants(mutants, baseline, tests, workers, env, pytest_args, equivalents, progress, timeout_scale,
                    timeout_slack, finished, live, check_equivalents)
    now = judged_files([t.path for t in targets], root, equivalents_path)
    changed = [then["path"] for then, later in zip(judged["sources"], now["sources"]) if then != later]
    changed += [now["equivalents"]["path"]] if judged.get("equivalents") != now.get("equivalents") else []
    return MutationReport(mutants, equivalents, baseline, time.monotonic() - started, workers, judged, changed)

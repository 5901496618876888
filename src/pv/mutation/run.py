"""The whole of ``pv mutate``: targets, first run, plan, mutant runs, report."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pv._util.errors import UserError
from pv.mutation.equivalents import load_equivalents
from pv.mutation.execution import MEMORY_FRACTION, TIMEOUT_SCALE, TIMEOUT_SLACK_S, Progress, memory_budget, run_mutants
from pv.mutation.incremental import cache_keys, load_previous, reuse, since
from pv.attest.inputs import relative_input
from pv.mutation.inputs import changed_inputs, run_inputs
from pv.mutation.report import MutationReport, judged_files
from pv.mutation.results import Mutant
from pv.mutation.sampling import draw
from pv.mutation.selection import first_run, plan
from pv.mutation.targets import resolve_targets

CACHE_ENV = "PV_MUTATE_CACHE"


def run_mutation(tests: Sequence[str], scopes: Iterable[str], root: Path, *, only: Sequence[str] = (),
                 equivalents_path: Path | None = None, workers: int = 2, pytest_args: Sequence[str] = (),
                 progress: Progress | None = None, note: Callable[[str], None] = lambda line: None,
                 timeout_scale: float = TIMEOUT_SCALE, timeout_slack: float = TIMEOUT_SLACK_S,
                 checkpoint: Callable[[MutationReport], None] | None = None,
                 checkpoint_every_s: float = 60.0, live: bool = True,
                 check_equivalents: bool = False, contracts: Path | None = None,
                 output: Path | None = None, memory_fraction: float = MEMORY_FRACTION,
                 previous: Path | None = None, since_ref: str | None = None, sample: int | None = None,
                 seed: int = 0) -> MutationReport:
    """The whole of ``pv mutate``: targets, first run, plan, mutant runs, report.

    ``root`` is the project root: it goes first on ``sys.path`` (and ``PYTHONPATH``) so the project's
    modules are found however pv is installed, and every input must lie below it. ``output``, the
    file the caller will write the report to, is refused when it is one of the run's inputs.
    ``previous``: an earlier JSON report whose results are reused where a mutant's cache key is
    unchanged; ``since_ref``: only the mutants of definitions changed since that git commit; ``sample``:
    run only that many of the mutants a test reaches, drawn with ``seed`` (the report estimates the score).
    """
    started = time.monotonic()
    root = root.resolve()
    if equivalents_path is not None:
        relative_input(equivalents_path, root, "equivalents file")
    equivalents = load_equivalents(equivalents_path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    with tempfile.TemporaryDirectory(prefix="pv-mutate-cache-") as cache:
        env = {**os.environ, CACHE_ENV: cache, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        collected = first_run(tests, [], pytest_args, env, collect_only=True)
        declared = {scope for entry in collected.tests.values() for scope in entry["covers"]}
        targets = resolve_targets(set(scopes) | declared, root, only)
        if only:  # mutants run in the order of the modules asked for
            targets.sort(key=lambda t: next(i for i, p in enumerate(only) if t.module == p or t.module.startswith(p + ".")))
        if not targets:
            raise UserError("nothing to mutate: no contract binds a function and no falsifier declares covers"
                            + (f" under {', '.join(only)}" if only else ""))
        rule, inputs = run_inputs(root, [t.path for t in targets], [Path(f) for f in collected.files], contracts,
                                  equivalents_path)
        _refuse_output_onto_input(output, root, inputs)
        note(f"first run of {' '.join(tests)} under the line tracer "
             f"({', '.join(t.module for t in targets)})")
        judged = judged_files([t.path for t in targets], root, equivalents_path)
        files = {t.module: relative_input(t.path, root, "mutated source") for t in targets}
        baseline = first_run(tests, [t.path for t in targets], pytest_args, env, workers=workers)
        rule, found = run_inputs(root, [t.path for t in targets], [Path(f) for f in [*collected.files, *baseline.files]],
                                 contracts, equivalents_path, [Path(f) for f in baseline.modules])
        inputs = {**found, **inputs}  # a file read before the first run keeps the digest of that reading
        _refuse_output_onto_input(output, root, inputs)
        mutants = plan(targets, baseline)
        if since_ref is not None:
            mutants = since(mutants, targets, root, since_ref)
        keys = cache_keys(mutants, inputs)
        for mutant in mutants:
            mutant.cache_key = keys[mutant.key]
        reused = reuse(mutants, keys, load_previous(previous)) if previous is not None else 0
        drawn, order = draw(mutants, equivalents, sample, seed) if sample is not None else (None, mutants)
        note(f"{len(mutants)} mutants ({reused} results reused); {len(baseline.passed())} tests passed unmutated "
             f"({baseline.seconds:.0f} s); running with {workers} workers")
        last = [time.monotonic()]

        def finished(mutant: Mutant) -> None:
            if checkpoint and time.monotonic() - last[0] >= checkpoint_every_s:
                last[0] = time.monotonic()
                checkpoint(MutationReport(mutants, equivalents, baseline, last[0] - started, workers, judged,
                                          inputs=inputs, input_rule=rule, files=files, sample=drawn))

        run_mutants(order, baseline, tests, workers, env, pytest_args, equivalents, progress, timeout_scale,
                    timeout_slack, finished, live, check_equivalents, memory_budget(memory_fraction, workers))
    changed = changed_inputs(inputs, root)
    return MutationReport(mutants, equivalents, baseline, time.monotonic() - started, workers, judged, changed,
                          inputs, rule, files, drawn)


def _refuse_output_onto_input(output: Path | None, root: Path, inputs: dict[str, str]) -> None:
    if output is None:
        return
    target = output.resolve()
    if any((root / name).resolve() == target for name in inputs):
        raise UserError(f"{output}: -o names a file this run reads (an input of the report); "
                        "write the report elsewhere")

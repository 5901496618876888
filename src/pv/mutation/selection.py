"""Which tests may kill which mutant: a first, traced run of the tests, then the plan."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv.mutation import tracing
from pv.mutation.generation import sites
from pv.mutation.results import Mutant
from pv.mutation.targets import Target

#: pytest options of every run: no cache; no Hypothesis pytest plugin, whose end-of-session work
#: costs seconds per mutant (Hypothesis itself, and @given tests, work without it); no pytest-randomly,
#: whose order and seeds would differ between the first run and a mutant's (a test failing for its
#: seed would be recorded as the killer)
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:randomly")


@dataclass
class Baseline:
    tests: dict[str, dict[str, Any]]
    preload: list[str]
    seconds: float
    exit_code: int
    output: str
    #: every test file the run collected and conftest.py it loaded
    files: list[str] = field(default_factory=list)
    #: the source file of every module the run imported from pytest's rootdir
    modules: list[str] = field(default_factory=list)

    def passed(self) -> list[str]:
        return [test for test, entry in self.tests.items() if entry["outcome"] == "passed"]


def first_run(tests: Sequence[str], files: Iterable[Path], pytest_args: Sequence[str], env: dict[str, str],
              collect_only: bool = False, workers: int = 1) -> Baseline:
    """Run ``tests`` once unmutated under the line tracer (in ``workers`` processes), or only collect them."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pv-mutate-") as tmp:
        run_env = {**env, tracing.FILES_ENV: json.dumps(sorted(str(f) for f in files)),
                   tracing.OUT_ENV: tmp}
        spread = ["-n", str(workers)] if workers > 1 and not collect_only else []
        command = [sys.executable, "-m", "pytest", *tests, "-q", *PYTEST_OPTIONS, *spread,
                   "-p", "pv.mutation.tracing", *pytest_args, *(["--collect-only"] if collect_only else [])]
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, check=False)
        data = tracing.merged(Path(tmp))
        if data is None:
            raise UserError(f"the first test run wrote no coverage (pytest exit {proc.returncode}):\n"
                            + (proc.stdout + proc.stderr)[-3000:])
    return Baseline(data["tests"], data["preload"], time.monotonic() - started, proc.returncode,
                    proc.stdout + proc.stderr, data["files"], data["modules"])



def _declared(covers: Sequence[str], module: str, scope: str) -> bool:
    for declared in covers:
        mod, _, qualname = declared.partition(":")
        if mod == module and (not qualname or scope == qualname or scope.startswith(qualname + ".")):
            return True
    return False


def plan(targets: Sequence[Target], baseline: Baseline) -> list[Mutant]:
    """Every mutant of the targets, with the passing tests that reach it, fastest first."""
    passed = sorted(baseline.passed(), key=lambda test: baseline.tests[test]["seconds"])
    mutants = []
    for target in targets:
        scopes = sorted(target.scopes)
        path = str(target.path)
        for site in sites(target.source, scopes, path):
            span = set(range(site.line, site.end_line + 1))
            chosen = []
            for test in passed:
                entry = baseline.tests[test]
                lines = entry["lines"].get(path) or []
                reached = bool(lines) or path in entry.get("binds", ())
                if not reached or (entry["covers"] and not _declared(entry["covers"], target.module, site.scope)):
                    continue
                if site.at_import or span.intersection(lines):
                    chosen.append(test)
            mutants.append(Mutant(f"{target.module}:{site.key}", target.module, target.path, scopes, site, chosen,
                                  source=target.source))
    return mutants

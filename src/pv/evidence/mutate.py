"""``pv mutate``: automatic first-order mutants, each run against the tests that can reach it.

What is mutated (the *targets*): every function (or module attribute) that a
contract binds (``implementation:`` of an equation, the values of a check's
``constants:``), and every scope that a falsifier declares it covers
(``@pytest.mark.falsifies(..., covers=["pkg.module", "pkg.module:function"])``).
The operators are those of :mod:`pv.evidence.mutate_ast`.

How: a first pytest run of the given tests (falsifiers and compiled contract
checks) records, per test, the lines of the target files it runs, its outcome
and its duration (:mod:`pv.evidence.mutate_coverage`). A mutant is then run
against the tests that passed there and ran one of its lines (a site that runs
at import, such as a module constant, is reached by every test that ran the
module); a falsifier that declares ``covers`` is used only for mutants inside
what it declares. The tests run fastest first and stop at the first failure,
in parallel workers (:mod:`pv.evidence.mutate_worker`), each mutant applied in
memory in a forked process, with a timeout scaled from the tests' own time.

Statuses: ``killed`` (a test failed, an assertion or a crash, both recorded),
``survived`` (every selected test passed, or no test reaches the mutant),
``timeout``, ``equivalent`` (listed with a reason in the reviewed equivalents
file; not run unless ``--check-equivalents`` asks, which reports an entry that a
test kills) and ``error`` (the run itself broke). Score = killed / (killed + survived).

A folder named by ``PV_MUTATE_CACHE`` is shared by the first run and every
mutant run: fixtures may keep there what does not depend on the code under
mutation (test models built once by unmutated code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pv import __version__
from pv._util.errors import UserError
from pv._util.files import sha256_of
from pv.evidence import mutate_coverage
from pv.evidence.mutate_worker import NOT_APPLICABLE
from pv.evidence.mutate_ast import Site, defined_names, sites

CACHE_ENV = "PV_MUTATE_CACHE"
#: pytest options of every run: no cache, and no Hypothesis pytest plugin, whose end-of-session work
#: costs seconds per mutant (Hypothesis itself, and @given tests, work without it)
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
KILLED, SURVIVED, TIMEOUT, EQUIVALENT, ERROR = "killed", "survived", "timeout", "equivalent", "error"
#: a mutant not yet run (only in a report written while the run goes on)
NOT_RUN = "not-run"
STATUSES = (KILLED, SURVIVED, TIMEOUT, EQUIVALENT, ERROR)
#: a mutant's timeout (from the end of its collection): this many times its selected tests'
#: first-run seconds, plus the slack
TIMEOUT_SCALE, TIMEOUT_SLACK_S = 3.0, 10.0
#: the worker modes (see :mod:`pv.evidence.mutate_worker`)
SESSION, PRELOAD = "--session", "--preload"


# --- targets ------------------------------------------------------------------------------


@dataclass
class Target:
    """One module to mutate, its source as read once at the start, and the scopes of it that are mutated
    (``""``: all of it). Every mutant is made from that text, whatever happens to the file later."""

    module: str
    path: Path
    source: str
    scopes: set[str] = field(default_factory=set)


def contract_bindings(contracts: Path) -> set[str]:
    """``module:qualname`` of every implementation and check constant bound by the contracts in a folder."""
    found: set[str] = set()
    for path in sorted(contracts.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"{path}: cannot read the contract: {err}") from None
        for equation in (data.get("equations") or {}).values():
            if isinstance(equation, dict) and isinstance(equation.get("implementation"), str):
                found.add(equation["implementation"])
        for obligation in data.get("proof_obligations") or []:
            check = obligation.get("check") if isinstance(obligation, dict) else None
            constants = check.get("constants") if isinstance(check, dict) else None
            if isinstance(constants, dict):
                found.update(value for value in constants.values() if isinstance(value, str) and ":" in value)
    return found


def module_path(module: str, root: Path) -> Path:
    """The source file of ``module`` (found without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise UserError(f"cannot mutate {module!r}: no Python source file found for it")
    return Path(spec.origin).resolve()


def resolve_targets(scopes: Iterable[str], root: Path, only: Sequence[str] = ()) -> list[Target]:
    """Targets of ``module`` / ``module:qualname`` scopes, restricted to modules under ``only`` prefixes."""
    targets: dict[str, Target] = {}
    for scope in sorted(set(scopes)):
        module, _, qualname = scope.partition(":")
        if only and not any(module == prefix or module.startswith(prefix + ".") for prefix in only):
            continue
        if module not in targets:
            path = module_path(module, root)
            targets[module] = Target(module, path, path.read_text(encoding="utf-8"))
        target = targets[module]
        if qualname:
            names = defined_names(target.source, str(target.path))
            if qualname not in names:
                raise UserError(f"cannot mutate {scope!r}: {target.path} defines no {qualname!r}")
        target.scopes.add(qualname)
    return [targets[name] for name in sorted(targets)]


# --- equivalents --------------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalent:
    key: str
    reason: str
    change: str


def load_equivalents(path: Path | None) -> dict[str, Equivalent]:
    """The reviewed equivalents file: ``key: {change: "a -> b", reason: why no test can tell}``."""
    if path is None or not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read the equivalent mutants: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of mutant key -> {{change, reason}}")
    found = {}
    for key, entry in data.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("reason"), str) and entry["reason"].strip()
                and isinstance(entry.get("change"), str) and set(entry) <= {"reason", "change"}):
            raise UserError(f"{path}: {key}: expected {{change: 'original -> mutated', reason: 'why'}} "
                            "with a non-empty reason")
        found[str(key)] = Equivalent(str(key), entry["reason"].strip(), entry["change"])
    return found


# --- the first run ------------------------------------------------------------------------


@dataclass
class Baseline:
    tests: dict[str, dict[str, Any]]
    preload: list[str]
    seconds: float
    exit_code: int
    output: str

    def passed(self) -> list[str]:
        return [test for test, entry in self.tests.items() if entry["outcome"] == "passed"]


def first_run(tests: Sequence[str], files: Iterable[Path], pytest_args: Sequence[str], env: dict[str, str],
              collect_only: bool = False, workers: int = 1) -> Baseline:
    """Run ``tests`` once unmutated under the line tracer (in ``workers`` processes), or only collect them."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pv-mutate-") as tmp:
        run_env = {**env, mutate_coverage.FILES_ENV: json.dumps(sorted(str(f) for f in files)),
                   mutate_coverage.OUT_ENV: tmp}
        spread = ["-n", str(workers)] if workers > 1 and not collect_only else []
        command = [sys.executable, "-m", "pytest", *tests, "-q", *PYTEST_OPTIONS, *spread,
                   "-p", "pv.evidence.mutate_coverage", *pytest_args, *(["--collect-only"] if collect_only else [])]
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, check=False)
        data = mutate_coverage.merged(Path(tmp))
        if data is None:
            raise UserError(f"the first test run wrote no coverage (pytest exit {proc.returncode}):\n"
                            + (proc.stdout + proc.stderr)[-3000:])
    return Baseline(data["tests"], data["preload"], time.monotonic() - started, proc.returncode,
                    proc.stdout + proc.stderr)


# --- planning -----------------------------------------------------------------------------


@dataclass
class Mutant:
    """One mutant, the tests selected for it, and (once run) its outcome."""

    key: str
    module: str
    path: Path
    scopes: list[str]
    site: Site
    tests: list[str] = field(default_factory=list)
    status: str = NOT_RUN
    detail: str = ""
    killed_by: str | None = None
    #: how it was killed: "assertion" (or pytest.fail), else the exception type that ended the test
    kind: str = ""
    seconds: float = 0.0
    #: how it was applied: "swapped" into a collected session, or "imported" afresh ("": not run)
    applied: str = ""
    #: the module's text the mutant is made from (read once when the run started)
    source: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "module": self.module, "scope": self.site.scope, "operator": self.site.operator,
                "line": self.site.line, "change": self.site.change, "status": self.status, "detail": self.detail,
                "killed_by": self.killed_by, "kill_kind": self.kind, "tests_selected": len(self.tests),
                "seconds": round(self.seconds, 3), "applied": self.applied}


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
                lines = entry["lines"].get(path)
                if not lines or (entry["covers"] and not _declared(entry["covers"], target.module, site.scope)):
                    continue
                if site.at_import or span.intersection(lines):
                    chosen.append(test)
            mutants.append(Mutant(f"{target.module}:{site.key}", target.module, target.path, scopes, site, chosen,
                                  source=target.source))
    return mutants


# --- running ------------------------------------------------------------------------------


class Worker:
    """One :mod:`pv.evidence.mutate_worker` process (it forks a child per mutant).

    ``mode`` is ``--session`` (the arguments are pytest's: it collects them once) or
    ``--preload`` (the arguments are libraries to import once).
    """

    def __init__(self, mode: str, arguments: Sequence[str], env: dict[str, str]) -> None:
        jobs_read, self._jobs_fd = os.pipe()
        self._answers_fd, answers_write = os.pipe()
        self.log = tempfile.TemporaryFile(mode="w+", prefix="pv-mutate-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pv.evidence.mutate_worker", str(jobs_read), str(answers_write), mode, *arguments],
            pass_fds=(jobs_read, answers_write), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        os.close(jobs_read)
        os.close(answers_write)
        self.jobs = os.fdopen(self._jobs_fd, "w", encoding="utf-8")
        self.answers = os.fdopen(self._answers_fd, "r", encoding="utf-8")
        ready = json.loads(self.answers.readline() or "{}")
        if not ready.get("ready"):
            self.close()
            raise UserError(f"a mutant worker ({mode}) did not start: {ready.get('detail', 'no answer')}\n"
                            + self._log_tail())

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        self.jobs.write(json.dumps(job) + "\n")
        self.jobs.flush()
        answer = self.answers.readline()
        if not answer:
            raise UserError("a mutant worker stopped answering:\n" + self._log_tail())
        return json.loads(answer)

    def close(self) -> None:
        for stream in (self.jobs, self.answers):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class _Workers:
    """Idle workers of each mode, started on demand, shared by the running threads."""

    def __init__(self, arguments: dict[str, Sequence[str]], env: dict[str, str]) -> None:
        self.arguments, self.env = arguments, env
        self.lock = threading.Lock()
        self.idle: dict[str, list[Worker]] = {mode: [] for mode in arguments}
        self.started: list[Worker] = []

    def run(self, mode: str, job: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            worker = self.idle[mode].pop() if self.idle[mode] else None
        if worker is None:
            worker = Worker(mode, self.arguments[mode], self.env)
            with self.lock:
                self.started.append(worker)
        answer = worker.run(job)
        with self.lock:
            self.idle[mode].append(worker)
        return answer

    def close(self) -> None:
        for worker in self.started:
            worker.close()


Progress = Callable[[Counter[str], int, float], None]
#: called (from one thread at a time) after each finished mutant
Finished = Callable[[Mutant], None]


def run_mutants(mutants: Sequence[Mutant], baseline: Baseline, tests: Sequence[str], workers: int, env: dict[str, str],
                pytest_args: Sequence[str], equivalents: dict[str, Equivalent],
                progress: Progress | None = None, timeout_scale: float = TIMEOUT_SCALE,
                timeout_slack: float = TIMEOUT_SLACK_S, finished: Finished | None = None, live: bool = True,
                check_equivalents: bool = False) -> None:
    """Run every mutant that some test reaches; set the status of all of them.

    A mutant listed (with its current change) in the equivalents file is not run unless
    ``check_equivalents``: it counts in neither side of the score, whatever a run would find,
    and running it only tells whether a test now kills it (the entry is then stale).

    A mutant inside a function body is swapped into a collected session (``live``); one that
    runs at import, or that cannot be swapped in, and every mutant without ``live``, is run
    with the mutated module imported afresh.
    """
    started = time.monotonic()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    pending = []
    for mutant in mutants:
        listed = equivalents.get(mutant.key)
        if listed is not None and listed.change == mutant.site.change and not check_equivalents:
            mutant.status, mutant.detail = EQUIVALENT, "listed as equivalent; not run (--check-equivalents runs it)"
            counts[EQUIVALENT] += 1
        elif mutant.tests:
            pending.append(mutant)
        else:
            mutant.status, mutant.detail = SURVIVED, "no selected test reaches this mutant"
            counts[_counted(mutant, equivalents)] += 1
    if progress:
        progress(counts, len(mutants), 0.0)
    workers_of = _Workers({SESSION: [*tests, *PYTEST_OPTIONS, *pytest_args], PRELOAD: baseline.preload}, env)

    def one(mutant: Mutant) -> None:
        seconds = sum(baseline.tests[test]["seconds"] for test in mutant.tests)
        job = {"module": mutant.module, "path": str(mutant.path), "source": mutant.source, "scopes": mutant.scopes,
               "site": mutant.site.index, "tests": mutant.tests, "args": [*PYTEST_OPTIONS, *pytest_args],
               "timeout": timeout_scale * seconds + timeout_slack}
        answer = {"status": NOT_APPLICABLE, "detail": "fresh imports asked for"}
        if live and not mutant.site.at_import:
            answer = workers_of.run(SESSION, job)
        mutant.applied = "swapped"
        if answer["status"] == NOT_APPLICABLE:
            answer, mutant.applied = workers_of.run(PRELOAD, job), "imported"
        mutant.status, mutant.detail = answer["status"], answer.get("detail", "")
        mutant.killed_by, mutant.seconds = answer.get("test"), answer.get("seconds", 0.0)
        mutant.kind = answer.get("kind", "")
        with lock:
            counts[_counted(mutant, equivalents)] += 1
            if progress:
                progress(counts, len(mutants), time.monotonic() - started)
            if finished:
                finished(mutant)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as executor:
            list(executor.map(one, pending))  # in plan order: a report written mid-run has whole modules
    finally:
        workers_of.close()


def _of_modules(equivalents: dict[str, Equivalent], modules: set[str]) -> dict[str, Equivalent]:
    """The entries about the given modules (a run restricted with --module judges only those)."""
    return {key: entry for key, entry in equivalents.items() if key.rsplit(":", 3)[0] in modules}


def _counted(mutant: Mutant, equivalents: dict[str, Equivalent]) -> str:
    """The status that counts: a listed mutant that survived (or was not run as listed) is equivalent."""
    listed = mutant.key in equivalents and mutant.status in (SURVIVED, EQUIVALENT)
    return EQUIVALENT if listed else mutant.status


# --- the report ---------------------------------------------------------------------------


@dataclass
class MutationReport:
    mutants: list[Mutant]
    equivalents: dict[str, Equivalent]
    baseline: Baseline
    wall_seconds: float
    workers: int
    #: what the run judged (:func:`judged_files`), taken before any mutant ran
    judged: dict[str, Any] = field(default_factory=dict)
    #: judged files whose bytes changed while the run went on (the report describes the text read at the start)
    changed: list[str] = field(default_factory=list)

    def status(self, mutant: Mutant) -> str:
        return _counted(mutant, self.equivalents)

    def counts(self, module: str | None = None) -> Counter[str]:
        return Counter(self.status(m) for m in self.mutants if module is None or m.module == module)

    @staticmethod
    def score_of(counts: Counter[str]) -> float | None:
        decided = counts[KILLED] + counts[SURVIVED]
        return counts[KILLED] / decided if decided else None

    def stale_equivalents(self) -> list[str]:
        """Entries that no longer describe a surviving mutant of the current code."""
        by_key = {m.key: m for m in self.mutants}
        problems = []
        for key, entry in sorted(_of_modules(self.equivalents, {m.module for m in self.mutants}).items()):
            mutant = by_key.get(key)
            if mutant is None:
                problems.append(f"{key}: no such mutant in the current code")
            elif mutant.site.change != entry.change:
                problems.append(f"{key}: listed as {entry.change!r}, the mutant now is {mutant.site.change!r}")
            elif mutant.status not in (SURVIVED, EQUIVALENT):
                problems.append(f"{key}: listed as equivalent but {mutant.status}"
                                + (f" by {mutant.killed_by}" if mutant.killed_by else ""))
        return problems

    def baseline_problems(self) -> list[str]:
        failed = [t for t, e in self.baseline.tests.items() if e["outcome"] == "failed"]
        return [f"{test}: fails unmutated (not used to kill mutants)" for test in failed]

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``judged``: the files it judged, with their sha256)."""
        counts = self.counts()
        modules = sorted({m.module for m in self.mutants})
        return {
            "tool": f"pv {__version__}",
            "judged": self.judged,
            "complete": counts[NOT_RUN] == 0,
            "not_run": counts[NOT_RUN],
            "killed": counts[KILLED], "survived": counts[SURVIVED], "timeout": counts[TIMEOUT],
            "error": counts[ERROR],
            "equivalent": [{"key": m.key, "change": m.site.change, "reason": self.equivalents[m.key].reason}
                           for m in self.mutants if self.status(m) == EQUIVALENT],
            "generated": len(self.mutants),
            "score": self.score_of(counts),
            "killed_by": dict(Counter(m.kind for m in self.mutants if self.status(m) == KILLED)),
            "wall_seconds": round(self.wall_seconds, 1),
            "first_run_seconds": round(self.baseline.seconds, 1),
            "workers": self.workers,
            "tests": {"passed": len(self.baseline.passed()),
                      "not_used": sorted(t for t, e in self.baseline.tests.items() if e["outcome"] != "passed")},
            "modules": [self._module_row(module) for module in modules],
            "stale_equivalents": self.stale_equivalents(),
            "mutants": [m.to_json() | {"status": self.status(m), "ran_as": m.status} for m in self.mutants],
        }

    def _module_row(self, module: str) -> dict[str, Any]:
        counts = self.counts(module)
        return {"module": module, "generated": sum(counts.values()),
                **{status: counts[status] for status in STATUSES}, "not_run": counts[NOT_RUN],
                "score": self.score_of(counts)}

    def table(self) -> str:
        """The report as text (see :func:`format_table`)."""
        return format_table(self.to_json())


def judged_files(sources: Iterable[Path], root: Path, equivalents_path: Path | None) -> dict[str, Any]:
    """Path (relative to ``root`` where it is below it) and sha256 of every mutated source file and of the
    equivalents file (sha256 None when it does not exist): a later reader can tell whether the score still
    describes the code."""
    judged: dict[str, Any] = {"sources": [_judged_file(path, root) for path in sorted(set(sources))]}
    if equivalents_path is not None:
        judged["equivalents"] = _judged_file(equivalents_path, root)
    return judged


def _judged_file(path: Path, root: Path) -> dict[str, Any]:
    root = root.resolve()
    path = (root / path).resolve()
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = path.as_posix()
    return {"path": shown, "sha256": sha256_of(path)}


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def format_table(data: dict[str, Any]) -> str:
    """Per module: generated, killed, survived, timed out, equivalent, error, score; then the details."""
    header: tuple[str, ...] = ("module", "generated", "killed", "survived", "timeout", "equivalent", "error")
    header += ("not_run", "score") if data.get("not_run") else ("score",)
    total = {"module": "total", **{key: data.get(key, 0) for key in (
        "generated", "killed", "survived", "timeout", "error", "not_run")},
             "equivalent": len(data["equivalent"]), "score": data["score"]}
    cells = [[_score_text(row[h]) if h == "score" else str(row[h]) for h in header]
             for row in [*data["modules"], total]]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [header, *cells]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    for status in (SURVIVED, TIMEOUT, ERROR):
        chosen = [m for m in data["mutants"] if m["status"] == status]
        if chosen:
            lines += ["", f"{status}:"]
            lines += [f"  {m['key']}  line {m['line']}: {m['change']}"
                      + (f"  ({m['detail']})" if status != SURVIVED or not m["tests_selected"] else "")
                      for m in chosen]
    if data["equivalent"]:
        lines += ["", "equivalent (reviewed):"]
        lines += [f"  {e['key']}: {e['change']}: {e['reason']}" for e in data["equivalent"]]
    if data["stale_equivalents"]:
        lines += ["", "stale equivalents:"] + [f"  {problem}" for problem in data["stale_equivalents"]]
    not_run = "" if data.get("complete", True) else f"; {data['not_run']} not run yet"
    lines += ["", f"score {_score_text(data['score'])} = killed {data['killed']} / (killed + survived "
                  f"{data['survived']}); {data['generated']} mutants in {data['wall_seconds']:.0f} s with "
                  f"{data['workers']} workers (first run {data['first_run_seconds']:.0f} s){not_run}"]
    return "\n".join(lines)


def rescore(data: dict[str, Any], equivalents: dict[str, Equivalent],
            equivalents_path: Path | None = None) -> dict[str, Any]:
    """A report of ``pv mutate --format json`` judged again under a (newly reviewed) equivalents file.

    With ``equivalents_path`` (that file, relative to the working directory), the report's ``judged``
    entry names it and its sha256 in place of the file of the first run.
    """
    mutants = []
    for entry in data["mutants"]:
        ran = entry.get("ran_as", entry["status"])  # what the run found, before any equivalents
        ran = SURVIVED if ran == EQUIVALENT else ran
        listed = equivalents.get(entry["key"])
        status = EQUIVALENT if ran == SURVIVED and listed is not None and listed.change == entry["change"] else ran
        mutants.append({**entry, "status": status, "ran_as": ran})
    stale = []
    by_key = {m["key"]: m for m in mutants}
    for key, listed in sorted(_of_modules(equivalents, {m["module"] for m in mutants}).items()):
        found = by_key.get(key)
        if found is None:
            stale.append(f"{key}: no such mutant in the current code")
        elif found["change"] != listed.change:
            stale.append(f"{key}: listed as {listed.change!r}, the mutant now is {found['change']!r}")
        elif found["ran_as"] != SURVIVED:
            stale.append(f"{key}: listed as equivalent but {found['ran_as']}")

    def counts_of(rows: list[dict[str, Any]]) -> Counter[str]:
        return Counter(row["status"] for row in rows)

    def row_of(module: str) -> dict[str, Any]:
        counts = counts_of([m for m in mutants if m["module"] == module])
        return {"module": module, "generated": sum(counts.values()), **{st: counts[st] for st in STATUSES},
                "not_run": counts[NOT_RUN], "score": MutationReport.score_of(counts)}

    counts = counts_of(mutants)
    order = list(dict.fromkeys(m["module"] for m in mutants))
    return {**data, "killed": counts[KILLED], "survived": counts[SURVIVED], "timeout": counts[TIMEOUT],
            "error": counts[ERROR], "not_run": counts[NOT_RUN], "score": MutationReport.score_of(counts),
            "equivalent": [{"key": m["key"], "change": m["change"], "reason": equivalents[m["key"]].reason}
                           for m in mutants if m["status"] == EQUIVALENT],
            "modules": [row_of(module) for module in sorted(order)], "stale_equivalents": stale,
            "mutants": mutants, **_rejudged(data, equivalents_path)}


def _rejudged(data: dict[str, Any], equivalents_path: Path | None) -> dict[str, Any]:
    if equivalents_path is None or not isinstance(data.get("judged"), dict):
        return {}
    return {"judged": {**data["judged"], "equivalents": _judged_file(equivalents_path, Path.cwd())}}


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


def report_problems(report: MutationReport, min_score: float | None) -> list[str]:
    """Why the run fails (empty: it passes): a score under the minimum, stale equivalents, broken tests."""
    problems = report.stale_equivalents() + report.baseline_problems()
    problems += [f"{path} changed while pv mutate ran: run it again on files that stay put"
                 for path in report.changed]
    if not report.baseline.passed():
        problems.append("no test passed unmutated: nothing can kill a mutant")
    score = report.score_of(report.counts())
    if min_score is not None and (score is None or score < min_score):
        problems.append(f"mutation score {'-' if score is None else f'{score:.3f}'} is below the minimum {min_score}")
    return problems


def scopes_from_contracts(contracts: Path) -> set[str]:
    """The bound functions of the contracts folder (empty when there is none)."""
    return contract_bindings(contracts) if contracts.is_dir() else set()

"""Running the mutants: parallel worker processes, each mutant against its selected tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pv._util.errors import UserError
from pv.mutation.equivalents import Equivalent
from pv.mutation.results import EQUIVALENT, KILLED, NO_COVERAGE, NOT_RUN, Mutant, counted
from pv.mutation.selection import PYTEST_OPTIONS, Baseline
from pv.mutation.worker import NOT_APPLICABLE

#: each selected test's time limit under a mutant (from the moment it starts): this many times its own
#: first-run seconds, plus the slack
TIMEOUT_SCALE, TIMEOUT_SLACK_S = 3.0, 10.0
#: the share of the machine's memory that all mutant processes together may grow by
MEMORY_FRACTION = 0.5
#: the worker modes (see :mod:`pv.mutation.worker`)
SESSION, PRELOAD = "--session", "--preload"


def memory_budget(fraction: float, workers: int) -> int | None:
    """Bytes one mutant process may add to its address space: ``fraction`` of the machine's memory
    shared by the ``workers`` (None: the machine's memory is unknown, no limit)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * fraction / max(1, workers))


class Worker:
    """One :mod:`pv.mutation.worker` process (it forks a child per mutant).

    ``mode`` is ``--session`` (the arguments are pytest's: it collects them once) or
    ``--preload`` (the arguments are libraries to import once).
    """

    def __init__(self, mode: str, arguments: Sequence[str], env: dict[str, str]) -> None:
        jobs_read, self._jobs_fd = os.pipe()
        self._answers_fd, answers_write = os.pipe()
        self.log = tempfile.TemporaryFile(mode="w+", prefix="pv-mutate-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pv.mutation.worker", str(jobs_read), str(answers_write), mode, *arguments],
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

    def stop(self) -> None:
        """Ask every worker to end now (SIGTERM: each removes its temporary folders on the way out)."""
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.proc.terminate()

    def close(self) -> None:
        for worker in self.started:
            worker.close()


class KillHistory:
    """Which tests killed mutants so far, by function and by module.

    A mutant's tests run killers of its own function first, then killers of its module, then
    the rest fastest first (as PIT orders its tests): most mutants of a function fall to the test
    that killed its neighbours, so a kill costs one test, not every faster test that passes.
    The order changes which test is recorded as the killer, never whether a mutant is killed.
    """

    def __init__(self) -> None:
        self._by_scope: dict[tuple[str, str], Counter[str]] = {}
        self._by_module: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def record(self, mutant: Mutant) -> None:
        """Remember ``mutant``'s killer (if a test killed it)."""
        if mutant.status != KILLED or mutant.killed_by not in mutant.tests:
            return
        with self._lock:
            self._by_scope.setdefault((mutant.module, mutant.site.scope), Counter())[mutant.killed_by] += 1
            self._by_module.setdefault(mutant.module, Counter())[mutant.killed_by] += 1

    def order(self, mutant: Mutant) -> list[str]:
        """``mutant.tests`` (fastest first), earlier killers of its function and module moved ahead."""
        with self._lock:
            scope = Counter(self._by_scope.get((mutant.module, mutant.site.scope), ()))
            module = Counter(self._by_module.get(mutant.module, ()))
        rank = {test: index for index, test in enumerate(mutant.tests)}
        return sorted(mutant.tests, key=lambda test: (-scope[test], -module[test], rank[test]))


Progress = Callable[[Counter[str], int, float], None]
#: called (from one thread at a time) after each finished mutant
Finished = Callable[[Mutant], None]


def run_mutants(mutants: Sequence[Mutant], baseline: Baseline, tests: Sequence[str], workers: int, env: dict[str, str],
                pytest_args: Sequence[str], equivalents: dict[str, Equivalent],
                progress: Progress | None = None, timeout_scale: float = TIMEOUT_SCALE,
                timeout_slack: float = TIMEOUT_SLACK_S, finished: Finished | None = None, live: bool = True,
                check_equivalents: bool = False, memory: int | None = None) -> None:
    """Run every mutant that some test reaches; set the status of all of them.

    A mutant listed (with its current change) in the equivalents file is not run unless
    ``check_equivalents``: it counts in neither side of the score, whatever a run would find,
    and running it only tells whether a test now kills it (the entry is then stale).

    A mutant inside a function body is swapped into a collected session (``live``); one that
    runs at import, or that cannot be swapped in, and every mutant without ``live``, is run
    with the mutated module imported afresh. ``memory``: the bytes a mutant's process may add to
    its address space (past it the mutant is an ``error``, not a kill).
    """
    started = time.monotonic()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    history = KillHistory()
    pending = []
    for mutant in mutants:
        listed = equivalents.get(mutant.key)
        if mutant.reused:  # decided by an earlier run whose inputs are the same
            counts[counted(mutant, equivalents)] += 1
            history.record(mutant)
        elif listed is not None and listed.change == mutant.site.change and not check_equivalents:
            mutant.status, mutant.detail = EQUIVALENT, "listed as equivalent; not run (--check-equivalents runs it)"
            counts[EQUIVALENT] += 1
        elif mutant.sampled is False:
            mutant.detail = "not in the sample"
            counts[NOT_RUN] += 1
        elif mutant.tests:
            pending.append(mutant)
        else:
            mutant.status, mutant.detail = NO_COVERAGE, "no selected test reaches this mutant"
            counts[counted(mutant, equivalents)] += 1
    if progress:
        progress(counts, len(mutants), 0.0)
    workers_of = _Workers({SESSION: [*tests, *PYTEST_OPTIONS, *pytest_args], PRELOAD: baseline.preload}, env)

    def one(mutant: Mutant) -> None:
        tests = history.order(mutant)
        limits = [timeout_scale * baseline.tests[test]["seconds"] + timeout_slack for test in tests]
        job = {"module": mutant.module, "path": str(mutant.path), "source": mutant.source, "scopes": mutant.scopes,
               "site": mutant.site.index, "tests": tests, "args": [*PYTEST_OPTIONS, *pytest_args],
               "timeout": sum(limits), "limits": limits, "memory": memory}
        answer = {"status": NOT_APPLICABLE, "detail": "fresh imports asked for"}
        if live and not mutant.site.at_import:
            answer = workers_of.run(SESSION, job)
        mutant.applied = "swapped"
        if answer["status"] == NOT_APPLICABLE:
            answer, mutant.applied = workers_of.run(PRELOAD, job), "imported"
        mutant.status, mutant.detail = answer["status"], answer.get("detail", "")
        mutant.killed_by, mutant.seconds = answer.get("test"), answer.get("seconds", 0.0)
        mutant.kind = answer.get("kind", "")
        history.record(mutant)
        with lock:
            counts[counted(mutant, equivalents)] += 1
            if progress:
                progress(counts, len(mutants), time.monotonic() - started)
            if finished:
                finished(mutant)

    executor = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        list(executor.map(one, pending))  # in plan order: a report written mid-run has whole modules
    except BaseException:  # Ctrl-C, SIGTERM, SIGHUP: no further mutant; the workers clean up and end
        executor.shutdown(wait=False, cancel_futures=True)
        workers_of.stop()
        raise
    finally:
        executor.shutdown(wait=True)
        workers_of.close()

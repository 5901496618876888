"""The harness of the fuzz suite: hostile cases run in a child process whose time and memory
are bounded by the kernel (``resource.setrlimit``), and judged from what it reports.

A batch fails when the child is killed (over its address-space or CPU limit, or past its
wall-clock limit: a hang), when a case takes longer than its own limit, when the peak
resident memory passes :data:`MAX_RSS_MB`, or when anything is written outside the case
folder (a canary folder next to it, which hostile inputs aim at, must stay as it was).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import strategies as st

WORKER = Path(__file__).with_name("fuzz_worker.py")
ROOT = Path(__file__).resolve().parents[2]
#: Address space of the child (the kernel refuses more: a MemoryError, reported as a failure).
MAX_ADDRESS_SPACE_MB = 2048
#: Peak resident memory a batch may reach.
MAX_RSS_MB = 1024
#: Seconds one case may take: a hang guard, far above the need so that load cannot reach it (the
#: slowest case of the suite takes about 1.2 s on a 2-core CPU); work is bounded by counts.
MAX_CASE_SECONDS = 30.0


@dataclass
class Batch:
    """What a bounded child reported: one result per case, its peak memory, its wall time."""

    results: list[dict[str, Any]]
    peak_mb: float
    seconds: float

    def slowest(self) -> dict[str, Any]:
        return max(self.results, key=lambda r: r["seconds"])


def _limits(address_mb: int, cpu_seconds: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_mb * 2**20, address_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        os.setsid()

    return apply


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """(size, mtime, first bytes) of every entry under ``folder``, links not followed."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        head = path.read_bytes()[:64] if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns, head)
    return found


def run_batch(cases: Sequence[dict], folder: Path, *, wall_seconds: float = 120.0,
              address_mb: int = MAX_ADDRESS_SPACE_MB) -> Batch:
    """Run ``cases`` in one bounded child with ``folder / "work"`` as its working folder;
    fail the test on a kill, a hang or a write into ``folder / "outside"``."""
    work, outside = folder / "work", folder / "outside"
    work.mkdir(exist_ok=True)
    outside.mkdir(exist_ok=True)
    before = snapshot(outside)
    cases_path, results_path = folder / "cases.json", folder / "results.jsonl"
    cases_path.write_text(json.dumps(list(cases)), encoding="utf-8")
    env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(work)}
    env.setdefault("PV_SHARED_DIR", str(ROOT.parent / "shared"))
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, str(WORKER), str(cases_path), str(results_path)], cwd=work, env=env,
                             preexec_fn=_limits(address_mb, int(wall_seconds)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = 0
    while True:
        pid, status, _ = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > wall_seconds:
            os.killpg(child.pid, signal.SIGKILL)
            _, status, _ = os.wait4(child.pid, 0)
            raise AssertionError(f"the batch hung: killed after {wall_seconds} s\n{_done(results_path)}")
        time.sleep(0.02)
    child.returncode = 0  # reaped above
    stderr = child.stderr.read().decode(errors="replace")[-3000:] if child.stderr else ""
    elapsed = time.monotonic() - started
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
        f"the bounded child died (status {status}; killed by a limit?):\n{stderr}\n{_done(results_path)}")
    results = [json.loads(line) for line in results_path.read_text(encoding="utf-8").splitlines()]
    assert len(results) == len(cases), f"{len(results)} results for {len(cases)} cases"
    assert snapshot(outside) == before, "something was written outside the case folder"
    peak_mb = max((result["peak_kb"] for result in results), default=0) / 1024  # the child's own (fuzz_worker)
    assert peak_mb <= MAX_RSS_MB, f"peak memory {peak_mb:.0f} MB over {MAX_RSS_MB} MB"
    for case, result in zip(cases, results):
        assert result["seconds"] <= case.get("max_seconds", MAX_CASE_SECONDS), (
            f"case took {result['seconds']} s: {_brief(case)}")
    return Batch(results, peak_mb, elapsed)


def _done(results_path: Path) -> str:
    if not results_path.exists():
        return "no case finished"
    lines = results_path.read_text(encoding="utf-8").splitlines()
    return f"{len(lines)} cases finished; the next one did not"


def _brief(case: dict) -> str:
    return json.dumps(case)[:300]


def assert_clear_cli(cases: Sequence[dict], batch: Batch) -> None:
    """Every ``cli`` case ended with an allowed exit code, no traceback, and a message when it failed."""
    for case, result in zip(cases, batch.results):
        assert result.get("traceback") is None, f"traceback for {_brief(case)}:\n{result['traceback']}"
        allowed = case.get("rc", (0, 1, 2))
        assert result["rc"] in allowed, f"exit {result['rc']} (allowed {allowed}) for {_brief(case)}: {result['stderr']}"
        if result["rc"] != 0:
            assert (result["stderr"] + result["stdout"]).strip(), f"no message for {_brief(case)}"
        assert "Traceback" not in result["stderr"], f"traceback printed for {_brief(case)}"


def drawn(strategy: st.SearchStrategy, count: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same on every run (Hypothesis, derandomized)."""
    found: list[Any] = []

    @hypothesis.settings(max_examples=count, derandomize=True, database=None, deadline=None,
                         phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found[:count]


#: A file to append each class's figures to (inputs, slowest case, peak memory), if set.
MEASURES_ENV = "PV_FUZZ_MEASURES"


def record(cls: str, batch: Batch, count: int) -> None:
    """Append this class's figures to ``$PV_FUZZ_MEASURES`` when it is set."""
    target = os.environ.get(MEASURES_ENV)
    if not target:
        return
    slowest = batch.slowest()
    line = {"class": cls, "inputs": count, "slowest_seconds": slowest["seconds"],
            "peak_mb": round(batch.peak_mb, 1), "batch_seconds": round(batch.seconds, 2)}
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")

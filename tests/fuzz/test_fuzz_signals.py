"""Signals: `pv verify` stopped by SIGTERM, SIGINT or SIGHUP ends its pytest child's whole
process group (workers included), so nothing writes into its output folder afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: A parent that runs pv verify's child runner on a pytest stand-in: a process that starts a
#: worker of its own, both writing into the output folder until they are stopped.
DRIVER = """
import sys
from pathlib import Path
from pv.cli.verify import run_child
out = Path(sys.argv[1])
child = [sys.executable, "-c", (
    "import subprocess, sys, time; from pathlib import Path; out = Path(sys.argv[1]);"
    "subprocess.Popen([sys.executable, '-c', 'import time, sys; from pathlib import Path;"
    " [(Path(sys.argv[1], \\"worker\\").write_text(str(time.time())), time.sleep(0.05)) for _ in range(100000)]', str(out)]);"
    "[(Path(out, 'child').write_text(str(time.time())), time.sleep(0.05)) for _ in range(100000)]"), str(out)]
status, stopped = run_child(child, out)
print("stopped", stopped, flush=True)
sys.exit(128 + stopped if stopped else status)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stopped_verify_leaves_no_process_writing(tmp_path: Path, signum: int) -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ((tmp_path / "worker").exists() and (tmp_path / "child").exists()):
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.05)
    driver.send_signal(signum)
    out, _ = driver.communicate(timeout=30)
    assert driver.returncode == 128 + signum and f"stopped {signum}" in out
    time.sleep(0.3)
    marks = {name: (tmp_path / name).stat().st_mtime_ns for name in ("worker", "child")}
    time.sleep(0.5)
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in marks} == marks, "a process still writes"


def test_the_stand_in_keeps_writing_without_the_runner(tmp_path: Path) -> None:
    """The check above can fail: a plain subprocess leaves its worker running after the parent dies."""
    plain = DRIVER.replace(
        "status, stopped = run_child(child, out)",
        "import subprocess, time; p = subprocess.Popen(child, start_new_session=True); print(p.pid, flush=True);"
        " time.sleep(60); status, stopped = 0, None")
    driver = subprocess.Popen([sys.executable, "-c", plain, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert driver.stdout is not None
    group = int(driver.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "worker").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=30)  # its orphan still holds the pipe: no communicate()
        before = (tmp_path / "worker").stat().st_mtime_ns
        time.sleep(0.5)
        assert (tmp_path / "worker").stat().st_mtime_ns != before
    finally:
        os.killpg(group, signal.SIGKILL)
        driver.stdout.close()

"""Repository-wide pytest set-up: share the CPU fairly between xdist workers.

Each worker would otherwise start as many torch threads as there are cores, and N
workers x N threads oversubscribe the machine (measured 10-15x slower on 2 cores).
This runs before any test module imports torch, which reads the setting at start.
"""

from __future__ import annotations

import os

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("MKL_NUM_THREADS", _threads)

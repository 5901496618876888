"""Many small torch ops on CPU, spread over Python threads that each use one intra-op thread.

Chunked kernels (``distill.kd``, ``distill.quant``) issue a few ops per chunk of a
cache-sized buffer. Left to OpenMP, every op hands its few hundred microseconds of
work to all intra-op threads and waits for the slowest; on a busy machine one
descheduled thread stalls each op for a scheduler tick, and the many sync points
cost more than the work. Instead, the chunks go to as many Python threads as torch
has intra-op threads, each running its ops alone (torch releases the GIL in them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Task = TypeVar("Task")
_POOLS: dict[int, ThreadPoolExecutor] = {}


def for_each(work: Callable[[Task], None], tasks: Sequence[Task], device: torch.device) -> None:
    """Run ``work(task)`` for every task, without autograd; tasks must write disjoint outputs.

    On CPU, with more than one intra-op thread and task, over a pool of that many
    threads with one intra-op thread each; elsewhere (and on CUDA) in order, here.
    """
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            work(task)
        return
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="distill-cpu",
                                                    initializer=torch.set_num_threads, initargs=(1,))

    def run(task: Task) -> None:
        with torch.no_grad():
            work(task)

    list(pool.map(run, tasks))

"""Data parallelism on torch.distributed: the ranks of a run, the DDP student, collectives, the launcher.

A process started by ``torchrun`` (or ``launch``) finds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
environment; ``World.from_env`` joins the process group (gloo on CPU, NCCL on
CUDA, each CUDA rank on device ``LOCAL_RANK``). Without them a run is one rank
and no process group is made. Rank 0 alone writes files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.errors import DistillError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writes(self) -> bool:
        """Whether this rank writes the run's files (rank 0 only)."""
        return self.rank == 0

    @staticmethod
    def from_env(device: torch.device) -> tuple["World", torch.device]:
        """The world of this process, joined, and the device this rank uses."""
        if "WORLD_SIZE" not in os.environ:
            return World(), device
        missing = [key for key in ENV_KEYS if key not in os.environ]
        if missing:
            raise DistillError(f"torch.distributed environment incomplete: {', '.join(missing)} not set")
        try:
            world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
        except ValueError as err:
            raise DistillError(f"torch.distributed environment: {err}") from None
        if world.size < 1 or not 0 <= world.rank < world.size:
            raise DistillError(f"torch.distributed environment: rank {world.rank} of world size {world.size}")
        if device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(device)
        if world.distributed:
            import torch.distributed as dist

            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                    world_size=world.size)
        return world, device

    def close(self) -> None:
        """Leave the process group (if one was joined)."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def wrap_student(student: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The student as this rank trains it: DDP-wrapped across ranks (gradients averaged), else itself."""
    if not world.distributed:
        return student
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(student, device_ids=ids)


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a float tensor over all ranks (itself on one rank)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    total = value.detach().clone().float()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world.size


def launch(nproc: int, command: Sequence[str]) -> int:
    """Run ``python -m <command...>`` on ``nproc`` local ranks through torch's launcher; its exit code.

    The exit code is rank 0's when a rank failed (128+n when a signal ended it,
    the launcher's 128+n when a signal stopped the launcher). Every rank's
    output is shown; ``pv distill`` prints only on rank 0, and errors of the
    other ranks with their rank.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                "--monitor-interval=0.05", "--module", *command])
    try:
        torchrun.run(args)
    except ChildFailedError as err:
        failures = err.failures
        exitcode = (failures.get(0) or next(iter(failures.values()))).exitcode
        return 128 - exitcode if exitcode < 0 else exitcode
    except SignalException as err:
        return 128 + int(err.sigval)
    finally:
        sys.stdout.flush()
    return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ranks(nproc: int, target: Callable[[], int], log_dir: Path) -> list[Any]:
    """Start ``target()`` as ``nproc`` forked local CPU ranks (see ``fork_ranks``); their processes."""
    import multiprocessing

    log_dir.mkdir(parents=True, exist_ok=True)
    env = {"WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_rank_main, args=(rank, env, target, log_dir / f"rank{rank}.log"))
                 for rank in range(nproc)]
    for process in processes:
        process.start()
    return processes


def fork_ranks(nproc: int, target: Callable[[], int], log_dir: Path, timeout_s: float = 120.0) -> list[int]:
    """Run ``target()`` as ``nproc`` local CPU ranks in forked processes; their exit codes, by rank.

    Unlike ``launch``, the ranks inherit this process's memory (loaded modules,
    replaced functions), which a test of the training loop relies on. Each
    rank finds the torch.distributed environment set, runs one intra-op
    thread, and writes its output to ``log_dir/rank<N>.log``. When a rank
    fails, or ``timeout_s`` passes, the others are killed.
    """
    import time

    processes = start_ranks(nproc, target, log_dir)
    deadline = time.monotonic() + timeout_s
    while any(p.exitcode is None for p in processes):
        failed = any(p.exitcode not in (None, 0) for p in processes)
        if failed or time.monotonic() > deadline:
            for process in processes:
                if process.exitcode is None:
                    process.kill()
        time.sleep(0.02)
    for process in processes:
        process.join()
    return [int(p.exitcode) for p in processes]


def _rank_main(rank: int, env: dict[str, str], target: Callable[[], int], log: Path) -> None:
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    code = 1
    with open(log, "w", encoding="utf-8") as out:
        sys.stdout = sys.stderr = out
        try:
            code = int(target())
        except BaseException:  # the rank's traceback goes to its log; the exit code says it failed
            import traceback

            traceback.print_exc(file=out)
        out.flush()
    os._exit(code)

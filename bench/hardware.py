"""Measurement helpers shared by the benchmarks, and what this machine can do.

Every benchmark quotes its figures as ratios to ceilings measured in the same
run, on the same device:

- ``copy_bandwidth``: a large device-to-device copy (``dst.copy_(src)``),
  counting the bytes read plus the bytes written, timed with CUDA events (or a
  host clock on CPU);
- ``matmul_rate``: a large square matrix product, FLOP/s = 2 n^3 / time;
- ``time_fn``: warm-up, synchronisation, then the median of repeated runs;
- ``peak_extra_bytes``: the peak memory a piece of work allocates beyond what
  was allocated when it started: the CUDA caching allocator's statistics on a
  GPU; on CPU the allocation events that PyTorch's profiler records (every
  allocation and free of the CPU allocator, summed in time order; the profiler
  does not see frees of memory allocated before the region, so a region that
  frees such memory is over-counted: an upper bound);
- ``storage_bytes``: the bytes of distinct tensor storages an object holds
  (resident memory that does not depend on the allocator).

Run as a script, it prints the two ceilings and writes ``hardware-<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402

GIB = 1 << 30


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a clear error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise report.BenchError(f"--device {name!r}: not a device name ({exc})") from None
    if device.type not in ("cpu", "cuda"):
        raise report.BenchError(f"--device {name!r}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise report.BenchError(f"--device {name!r}: no CUDA device is available on this machine")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds per run of a timed function: median, fastest and slowest of ``repeats`` runs."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def time_fn(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, repeats: int = 10) -> Timing:
    """Time ``fn`` after ``warmup`` untimed runs: CUDA events per run on a GPU, a host clock on CPU."""
    if repeats < 1:
        raise report.BenchError(f"repeats must be at least 1, got {repeats}")
    for _ in range(max(0, warmup)):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)


@dataclass(frozen=True)
class Rate:
    """A measured ceiling: ``per_s`` units per second from work of ``amount`` units per run."""

    per_s: float
    amount: float
    unit: str
    timing: Timing
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"per_s": self.per_s, "amount": self.amount, "unit": self.unit,
                "timing": self.timing.to_json(), "detail": self.detail}


def default_copy_bytes(device: torch.device) -> int:
    """Bytes of the copied buffer: large enough to leave every cache far behind."""
    return 2 * GIB if device.type == "cuda" else 256 << 20


def copy_bandwidth(device: torch.device, nbytes: int | None = None, *, repeats: int = 10) -> Rate:
    """Bytes moved per second by ``dst.copy_(src)`` of ``nbytes``; moved = read + written = 2 * nbytes."""
    nbytes = nbytes or default_copy_bytes(device)
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), device, warmup=2, repeats=repeats)
    moved = 2 * nbytes
    del src, dst
    return Rate(moved / timing.median_s, moved, "B", timing,
                f"device-to-device copy of {nbytes} bytes; bytes moved = read + written")


def default_matmul_size(device: torch.device) -> int:
    return 8192 if device.type == "cuda" else 1024


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int | None = None, *, repeats: int = 10) -> Rate:
    """FLOP/s of an ``n x n x n`` matrix product in ``dtype`` on random data (2 n^3 FLOP per product)."""
    n = n or default_matmul_size(device)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=device, dtype=dtype)
    timing = time_fn(lambda: torch.matmul(a, b, out=out), device, warmup=3, repeats=repeats)
    flop = 2.0 * n**3
    del a, b, out
    return Rate(flop / timing.median_s, flop, "FLOP", timing,
                f"{n}x{n}x{n} matrix product in {report.dtype_name(dtype)} on random data")


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> tuple[object, int, str]:
    """Run ``fn`` once; return its result, the peak bytes it allocated beyond those live at its start, and the method.

    The result is kept alive until the end, so memory it holds (a gradient, say) counts.
    """
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - base, "cuda caching allocator (max_memory_allocated)"
    return (*_cpu_peak_extra(fn), "cpu allocator events (torch.autograd.profiler, profile_memory); frees of "
            "memory allocated before the region are not seen, so an upper bound when the region frees such memory")


def _cpu_peak_extra(fn: Callable[[], object]) -> tuple[object, int]:
    """Peak of the running sum of CPU allocation events while ``fn`` runs."""
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        result = fn()
    events = [
        (event.start_ns(), event.nbytes())
        for event in prof.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    live = peak = 0
    for _, delta in sorted(events):
        live += delta
        peak = max(peak, live)
    return result, peak


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views of one storage count once)."""
    seen: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def module_storage_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages of a module's parameters and buffers."""
    return storage_bytes([*module.parameters(), *module.buffers()])


def allocated_bytes(device: torch.device) -> int | None:
    """Bytes the CUDA allocator holds for tensors now; None on CPU (no such counter)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    return torch.cuda.memory_allocated(device)


def device_info(device: torch.device) -> dict[str, Any]:
    """Who measured what: device name, memory, capability, host, software versions, the code's git commit
    (and whether the tree was dirty), and the UTC date."""
    info: dict[str, Any] = {
        "type": device.type,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "source": source_revision(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_bytes=props.total_memory,
            multiprocessors=props.multi_processor_count,
            unified=bool(getattr(props, "is_integrated", 0)),
            cuda=torch.version.cuda,
        )
    else:
        info.update(name=f"cpu ({os.cpu_count()} cores, {platform.machine()})", threads=torch.get_num_threads())
    return info


def source_revision() -> dict[str, Any]:
    """The git commit of the code measured and whether the working tree had changes (None without git)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_tag(info: dict[str, Any]) -> str:
    """A short file-name tag for a device: ``cpu`` or the GPU's name in lower case with dashes."""
    if info["type"] == "cpu":
        return "cpu"
    return "".join(c if c.isalnum() else "-" for c in info["name"].lower()).strip("-")


def ceilings(device: torch.device, dtype: torch.dtype, *, copy_bytes: int | None = None,
             matmul_n: int | None = None) -> dict[str, Rate]:
    """Both ceilings of this device: copy bandwidth and the matmul rate in ``dtype``."""
    return {"copy_bandwidth": copy_bandwidth(device, copy_bytes), "matmul_rate": matmul_rate(device, dtype, matmul_n)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    parser.add_argument("--copy-mib", type=int, default=None, help="copied buffer in MiB (default: 2048 GPU, 256 CPU)")
    parser.add_argument("--matmul-n", type=int, default=None, help="matrix size (default: 8192 GPU, 1024 CPU)")
    parser.add_argument("--dtype", default=None, help="matmul dtype (default: bf16 on GPU, f32 on CPU)")
    args = parser.parse_args(argv)
    return report.run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    dtype = report.parse_dtype(args.dtype or ("bf16" if device.type == "cuda" else "f32"))
    measured = ceilings(device, dtype, copy_bytes=(args.copy_mib << 20) if args.copy_mib else None,
                        matmul_n=args.matmul_n)
    info = device_info(device)
    rows = [
        ["copy bandwidth", f"{measured['copy_bandwidth'].per_s / 1e9:.1f} GB/s", measured["copy_bandwidth"].detail],
        ["matmul rate", f"{measured['matmul_rate'].per_s / 1e12:.2f} TFLOP/s", measured["matmul_rate"].detail],
    ]
    print(f"device: {info['name']}  date: {info['date']}")
    print(report.format_table(["ceiling", "measured", "how"], rows))
    payload = {"benchmark": "hardware", "device": info, "ceilings": {k: v.to_json() for k, v in measured.items()}}
    print(f"wrote {report.write_json(args.out, f'hardware-{device_tag(info)}', payload)}")
    return payload


if __name__ == "__main__":
    sys.exit(main())

"""Q4_K and Q6_K dequantization throughput: ``distill.quant`` against gguf's numpy dequantizer.

For each type, a weight matrix of random valid blocks (``distill.synth.random_blocks``,
default 4096 x 4096 on CPU, 18944 x 3584 on a GPU: a 7B ffn matrix) is expanded to
float32 with ``distill.quant.dequantize`` (without the scale check, as the model does
in each forward, and with it, as a load does).

- CPU: median time against ``gguf.quants.dequantize`` on the same bytes (the
  ratio is gguf's time over ours: above 1 means faster than gguf), both outputs
  compared bit for bit. ``--threads`` sets torch's intra-op threads.
- GPU: bytes moved (blocks read + float32 written) per second, as a fraction of the
  device's copy bandwidth measured in the same run; a sample of rows compared bit
  for bit with gguf's dequantizer on the CPU. ``--kernel`` picks the side: ``auto``
  (Triton on CUDA, PyTorch elsewhere), ``torch`` or ``triton`` (CUDA only: the
  interpreter on CPU is checked in the tests, never timed); ``--dtype`` the output
  (f32, bf16, f16; bytes moved count the output's size).

Writes ``dequant-<device>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, report  # noqa: E402

QTYPES = ("Q4_K", "Q6_K")
CPU_SHAPE = (4096, 4096)
GPU_SHAPE = (18944, 3584)
#: Targets: not slower than gguf's numpy code on CPU; half the copy bandwidth on a GPU.
CPU_SPEEDUP_MIN = 1.0
GPU_FRACTION_MIN = 0.5
SAMPLE_ROWS = 64


def _gguf_dequantize(raw: np.ndarray, qtype: str) -> np.ndarray:
    import gguf

    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])


def _rounded(weights: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """gguf's float32 weights rounded to ``dtype`` by torch (to nearest even)."""
    return torch.from_numpy(np.ascontiguousarray(weights)).to(dtype)


def run_case(qtype: str, device: torch.device, shape: tuple[int, int], args: argparse.Namespace,
             copy_bandwidth: float | None) -> dict[str, Any]:
    from distill.quant import dequantize
    from distill.synth import random_blocks

    gen = torch.Generator(device=device).manual_seed(args.seed)
    raw = random_blocks(qtype, shape, 0.02, gen, device)
    n = shape[0] * shape[1]
    dtype, kernel = report.parse_dtype(args.dtype), args.kernel
    moved = raw.numel() + torch.empty((), dtype=dtype).element_size() * n
    timing = hardware.time_fn(lambda: dequantize(raw, qtype, check=False, kernel=kernel, dtype=dtype), device,
                              warmup=args.warmup, repeats=args.repeats)
    checked = hardware.time_fn(lambda: dequantize(raw, qtype, kernel=kernel, dtype=dtype), device,
                               warmup=args.warmup, repeats=args.repeats)
    case: dict[str, Any] = {
        "qtype": qtype, "kernel": kernel, "dtype": report.dtype_name(dtype), "shape": list(shape), "weights": n,
        "block_bytes": raw.numel(), "bytes_moved": moved,
        "timing": timing.to_json(), "timing_with_scale_check": checked.to_json(),
        "weights_per_s": n / timing.median_s, "bytes_moved_per_s": moved / timing.median_s,
    }
    ours = dequantize(raw, qtype, check=False, kernel=kernel, dtype=dtype)
    if device.type == "cpu":
        raw_np = raw.numpy()
        reference = hardware.time_fn(lambda: _gguf_dequantize(raw_np, qtype), device, warmup=args.warmup,
                                     repeats=args.repeats)
        case["gguf_timing"] = reference.to_json()
        case["speedup_vs_gguf"] = reference.median_s / timing.median_s
        case["bit_exact_rows"] = shape[0]
        expected, got = _rounded(_gguf_dequantize(raw_np, qtype), dtype), ours
        case["target"] = report.target(f"{qtype} dequant speed vs gguf numpy", case["speedup_vs_gguf"],
                                       CPU_SPEEDUP_MIN, ">=", unit="x")
    else:
        rows = slice(0, min(SAMPLE_ROWS, shape[0]))
        expected, got = _rounded(_gguf_dequantize(raw[rows].cpu().numpy(), qtype), dtype), ours[rows].cpu()
        case["bit_exact_rows"] = rows.stop
        case["fraction_of_copy_bandwidth"] = report.ratio(case["bytes_moved_per_s"], copy_bandwidth)
        case["target"] = report.target(f"{qtype} dequant bytes/s vs copy bandwidth",
                                       case["fraction_of_copy_bandwidth"], GPU_FRACTION_MIN, ">=")
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    case["bit_exact"] = bool(torch.equal(expected.view(bits), got.view(bits)))
    return case


def _table(cases: list[dict[str, Any]], device: torch.device) -> str:
    rows = []
    for c in cases:
        row = [c["qtype"], "x".join(map(str, c["shape"])), f"{c['timing']['median_s'] * 1e3:.2f}",
               f"{c['timing_with_scale_check']['median_s'] * 1e3:.2f}", f"{c['weights_per_s'] / 1e6:.0f}",
               f"{c['bytes_moved_per_s'] / 1e9:.2f}"]
        if device.type == "cpu":
            row += [f"{c['gguf_timing']['median_s'] * 1e3:.2f}", f"{c['speedup_vs_gguf']:.2f}"]
        else:
            fraction = c["fraction_of_copy_bandwidth"]
            row += ["-" if fraction is None else f"{fraction:.2f}"]
        rows.append(row + ["yes" if c["bit_exact"] else "NO"])
    headers = ["type", "shape", "ms", "ms +check", "Mweights/s", "GB/s moved"]
    headers += ["gguf ms", "x gguf"] if device.type == "cpu" else ["x copy bw"]
    return report.format_table(headers + ["bit-exact"], rows)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    device = hardware.resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    default = GPU_SHAPE if device.type == "cuda" else CPU_SHAPE
    shape = (args.rows or default[0], args.cols or default[1])
    if shape[1] % 256:
        raise report.BenchError(f"--cols {shape[1]}: must be a multiple of 256 (whole Q4_K/Q6_K blocks)")
    qtypes = [q.strip() for q in args.qtypes.split(",") if q.strip()]
    unknown = [q for q in qtypes if q not in QTYPES]
    if unknown or not qtypes:
        raise report.BenchError(f"--qtypes: {unknown or 'none given'}; choose from {', '.join(QTYPES)}")
    report.parse_dtype(args.dtype)
    if args.kernel == "triton" and device.type != "cuda":
        raise report.BenchError("--kernel triton needs CUDA: the interpreter on CPU is for correctness, not speed")
    info = hardware.device_info(device)
    bandwidth = hardware.copy_bandwidth(device) if device.type == "cuda" else None
    cases = [run_case(q, device, shape, args, bandwidth.per_s if bandwidth else None) for q in qtypes]
    extra = f"  copy bandwidth: {bandwidth.per_s / 1e9:.0f} GB/s" if bandwidth else f"  torch threads: {torch.get_num_threads()}"
    print(f"device: {info['name']}  date: {info['date']}{extra}")
    print(_table(cases, device))
    print(report.format_targets([c["target"] for c in cases]))
    payload = {
        "benchmark": "dequant", "device": info,
        "config": {"shape": list(shape), "qtypes": qtypes, "repeats": args.repeats, "warmup": args.warmup,
                   "seed": args.seed, "torch_threads": torch.get_num_threads()},
        "ceilings": {"copy_bandwidth": bandwidth.to_json()} if bandwidth else {},
        "byte_model": "bytes moved = quantized blocks read + float32 weights written",
        "cases": cases,
    }
    print(f"wrote {report.write_json(args.out, f'dequant-{hardware.device_tag(info)}', payload)}")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    report.add_timing_arguments(parser, repeats=5, warmup=1)
    parser.add_argument("--rows", type=report.positive_int, default=None,
                        help=f"matrix rows (default {CPU_SHAPE[0]} on CPU, {GPU_SHAPE[0]} on a GPU)")
    parser.add_argument("--cols", type=report.positive_int, default=None,
                        help=f"matrix columns, a multiple of 256 (default {CPU_SHAPE[1]} on CPU, {GPU_SHAPE[1]} on a GPU)")
    parser.add_argument("--qtypes", default=",".join(QTYPES), help="comma-separated: Q4_K,Q6_K")
    parser.add_argument("--threads", type=report.positive_int, default=None, help="torch intra-op threads on CPU")
    parser.add_argument("--kernel", choices=("auto", "torch", "triton"), default="auto",
                        help="dequantization kernel (default auto: Triton on CUDA, PyTorch elsewhere)")
    parser.add_argument("--dtype", default="f32", help="output dtype: f32, bf16 or f16 (default f32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return report.run_main(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())

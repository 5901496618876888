"""Teacher forward: ``dequant`` vs ``q4k-native`` on a 7B-shaped Q4_K teacher, and Q4_K -> bf16 dequantization.

The teacher (``distill.synth`` random weights, quantized on the device, no
file) runs ``Teacher.logits`` on a batch of random ids (default 32 x 256) with
each backend of ``distill.teacher.load_teacher``: median ms per forward,
resident memory (``Teacher.resident_bytes``: its tensor storage; on a GPU also
the allocator's growth at load), peak memory of a forward beyond what was
live, and the agreement of the two backends' logits on the first sequence.

Baselines measured in the same run: the matmul rate in the teacher's compute
dtype gives the compute floor of a forward (see ``models.forward_flops``); the
copy bandwidth gives the ceiling of dequantization. Dequantization: every
quantized weight through ``distill.quant.dequantize`` to bf16,
bytes moved = quantized bytes read + bf16 bytes written, as a fraction of the
copy bandwidth (``--kernel``: auto, torch or triton; auto is Triton on CUDA);
and bit-exactness against ``gguf.quants.dequantize`` on a sample of rows of
every quantized type present. The q4k-native teacher expands each layer into
one scratch buffer (the largest layer in the compute dtype), counted in its
resident memory.

Targets (issue 7, for the full 7B shape on a GPU): dequant forward within
1.6x of the compute floor; q4k-native resident memory at most 6 GB; Q4_K ->
bf16 dequantization at least 70% of the copy bandwidth; bit-exact sample; and
the two backends' logits with a cosine of at least 0.999 (the same function).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, models, report  # noqa: E402

BACKENDS = ("q4k-native", "dequant")
FLOOR_LIMIT = 1.6
RESIDENT_LIMIT_BYTES = 6 * 10**9
DEQUANT_FRACTION_MIN = 0.7
#: The two backends compute the same function: the timed forwards must agree (FT-FROZEN-003's floor).
COSINE_MIN = 0.999


def _qtype(tensor) -> str:
    return str(getattr(tensor.qtype, "name", tensor.qtype))


def _empty_cache(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_backend(model, backend: str, ids: torch.Tensor, device: torch.device, dtype: torch.dtype,
                    args: argparse.Namespace) -> tuple[dict[str, Any], torch.Tensor]:
    """Load the teacher with ``backend``, time its forward; return the figures and the first sequence's logits."""
    from distill.teacher import load_teacher

    before = hardware.allocated_bytes(device)
    start = time.perf_counter()
    teacher = load_teacher(model, backend, device=device, dtype=dtype)
    hardware.synchronize(device)
    load_s = time.perf_counter() - start
    after = hardware.allocated_bytes(device)
    timing = hardware.time_fn(lambda: teacher.logits(ids), device, warmup=args.warmup, repeats=args.repeats)
    logits, peak_extra, method = hardware.peak_extra_bytes(lambda: teacher.logits(ids), device)
    first = logits[0].float().cpu()
    result = {
        "backend": teacher.backend,
        "load_s": load_s,
        "timing": timing.to_json(),
        "ms_per_forward": timing.median_s * 1e3,
        "tokens_per_s": ids.numel() / timing.median_s,
        "resident_bytes": teacher.resident_bytes() + teacher.scratch_bytes(),
        "scratch_bytes": teacher.scratch_bytes(),
        "allocator_growth_at_load_bytes": None if before is None else after - before,
        "forward_peak_extra_bytes": peak_extra,
        "memory_method": method,
        "vocab_size": teacher.vocab_size,
    }
    del teacher, logits
    _empty_cache(device)
    return result, first


def logits_agreement(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a64, b64 = a.double().flatten(), b.double().flatten()
    cosine = float(torch.nn.functional.cosine_similarity(a64, b64, dim=0))
    return {"cosine": cosine, "max_abs_diff": float((a64 - b64).abs().max())}


def measure_dequantization(model, device: torch.device, bandwidth: float, args: argparse.Namespace) -> dict[str, Any]:
    """Every quantized weight to bf16: time, bytes moved (read + written), fraction of the copy bandwidth."""
    from distill.quant import dequantize
    from distill.teacher import PLAIN_QTYPES

    tensors = [t for t in model.tensors.values() if _qtype(t) not in PLAIN_QTYPES]
    if not tensors:
        raise report.BenchError("the teacher has no quantized weights to dequantize")
    read = sum(t.raw.numel() for t in tensors)
    written = sum(_elements(t) for t in tensors) * 2

    def dequantize_all() -> None:
        for tensor in tensors:
            dequantize(tensor.raw, _qtype(tensor), dtype=torch.bfloat16, kernel=args.kernel)

    timing = hardware.time_fn(dequantize_all, device, warmup=1, repeats=args.dequant_repeats)
    moved = read + written
    by_type: dict[str, int] = {}
    for tensor in tensors:
        by_type[_qtype(tensor)] = by_type.get(_qtype(tensor), 0) + _elements(tensor)
    return {
        "tensors": len(tensors),
        "elements_by_type": by_type,
        "bytes_read": read,
        "bytes_written": written,
        "byte_model": "quantized blocks read once + bf16 weights written once",
        "timing": timing.to_json(),
        "bytes_per_s": moved / timing.median_s,
        "fraction_of_copy_bandwidth": moved / timing.median_s / bandwidth,
        "bit_exact": bit_exact_sample(tensors, args.sample_rows),
    }


def _elements(tensor) -> int:
    n = 1
    for dim in tensor.shape:
        n *= dim
    return n


def bit_exact_sample(tensors: list, rows: int) -> dict[str, Any]:
    """Our float32 dequantization vs gguf's, bit for bit, on the first ``rows`` rows of the first, middle and
    last tensor of each quantized type."""
    samples = []
    for qtype in sorted({_qtype(t) for t in tensors}):
        of_type = [t for t in tensors if _qtype(t) == qtype]
        picked = {id(t): t for t in (of_type[0], of_type[len(of_type) // 2], of_type[-1])}.values()
        samples += [_compare_rows(tensor, qtype, rows) for tensor in picked]
    return {"elements_checked": sum(s["elements"] for s in samples),
            "mismatches": sum(s["mismatches"] for s in samples), "samples": samples,
            "reference": "gguf.quants.dequantize (float32), compared as bit patterns"}


def _compare_rows(tensor, qtype: str, rows: int) -> dict[str, Any]:
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    from distill.quant import dequantize

    raw = tensor.raw[:rows]
    ours = dequantize(raw, qtype).cpu().numpy()
    reference = gguf_dequantize(raw.cpu().numpy(), GGMLQuantizationType[qtype]).reshape(ours.shape)
    bad = int((ours.view(np.uint32) != reference.astype(np.float32).view(np.uint32)).sum())
    return {"tensor": tensor.name, "qtype": qtype, "rows": int(raw.shape[0]), "elements": int(ours.size),
            "mismatches": bad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    report.add_timing_arguments(parser, repeats=5, warmup=1)
    models.add_shape_arguments(parser, "teacher", models.TEACHER_PRESET)
    parser.add_argument("--quant", default="q4_k", help="teacher weights: q4_k or q4_k_m (default q4_k)")
    parser.add_argument("--batch", type=report.positive_int, default=32)
    parser.add_argument("--seq", type=report.positive_int, default=256)
    parser.add_argument("--dtype", default=None, help="compute dtype (default: bf16 on a GPU, f32 on CPU)")
    parser.add_argument("--dequant-repeats", type=report.positive_int, default=3)
    parser.add_argument("--sample-rows", type=report.positive_int, default=16,
                        help="rows per quantized type compared with gguf's dequantizer (default 16)")
    parser.add_argument("--copy-mib", type=int, default=None)
    parser.add_argument("--matmul-n", type=int, default=None)
    parser.add_argument("--kernel", choices=("auto", "torch", "triton"), default="auto",
                        help="dequantization kernel of the dequantization figures (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return report.run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    device = hardware.resolve_device(args.device)
    dtype = report.parse_dtype(args.dtype or ("bf16" if device.type == "cuda" else "f32"))
    if args.quant not in ("q4_k", "q4_k_m"):
        raise report.BenchError(f"--quant {args.quant!r}: expected q4_k or q4_k_m")
    config = models.shape(args, "teacher")
    if args.kernel == "triton" and device.type != "cuda":
        raise report.BenchError("--kernel triton needs CUDA: the interpreter on CPU is for correctness, not speed")
    info = hardware.device_info(device)
    ceilings = hardware.ceilings(device, dtype, copy_bytes=(args.copy_mib << 20) if args.copy_mib else None,
                                 matmul_n=args.matmul_n)
    start = time.perf_counter()
    model = models.synth_model(config, args.quant, args.seed, device)
    hardware.synchronize(device)
    build_s = time.perf_counter() - start
    ids = models.random_ids(config.vocab_size, args.batch, args.seq, device, args.seed)
    backends, first_logits = {}, {}
    for backend in BACKENDS:
        backends[backend], first_logits[backend] = measure_backend(model, backend, ids, device, dtype, args)
    flops = models.forward_flops(config, args.batch, args.seq)
    floor_s = flops["total"] / ceilings["matmul_rate"].per_s
    for result in backends.values():
        result["ratio_to_compute_floor"] = result["timing"]["median_s"] / floor_s
    dequant = measure_dequantization(model, device, ceilings["copy_bandwidth"].per_s, args)
    payload = {
        "benchmark": "teacher",
        "device": info,
        "config": {"batch": args.batch, "seq": args.seq, "dtype": report.dtype_name(dtype), "quant": args.quant,
                   "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed},
        "teacher_shape": models.describe(config, args.teacher_preset),
        "quantized_bytes": model.quantized_bytes,
        "build_s": build_s,
        "ceilings": {name: rate.to_json() for name, rate in ceilings.items()},
        "compute_floor": {**flops, "seconds": floor_s},
        "backends": backends,
        "q4k_native_over_dequant_time": report.ratio(backends["q4k-native"]["timing"]["median_s"],
                                                     backends["dequant"]["timing"]["median_s"]),
        "backend_logits_agreement": logits_agreement(first_logits["dequant"], first_logits["q4k-native"]),
        "dequantization": dequant,
    }
    payload["targets"] = _targets(payload)
    _print(payload)
    print(f"wrote {report.write_json(args.out, f'teacher-{hardware.device_tag(info)}', payload)}")
    return payload


def _targets(payload: dict[str, Any]) -> list[dict[str, Any]]:
    backends, dequant = payload["backends"], payload["dequantization"]
    return [
        report.target("dequant forward / compute floor", backends["dequant"]["ratio_to_compute_floor"],
                      FLOOR_LIMIT, "<=", unit="x"),
        report.target("q4k-native resident teacher memory", backends["q4k-native"]["resident_bytes"] / 1e9,
                      RESIDENT_LIMIT_BYTES / 1e9, "<=", unit="GB"),
        report.target("dequantization to bf16 / copy bandwidth", dequant["fraction_of_copy_bandwidth"],
                      DEQUANT_FRACTION_MIN, ">="),
        report.target("dequantization mismatches vs gguf (bits)", dequant["bit_exact"]["mismatches"], 0, "<="),
        report.target("q4k-native vs dequant logits cosine", payload["backend_logits_agreement"]["cosine"],
                      COSINE_MIN, ">="),
    ]


def _print(payload: dict[str, Any]) -> None:
    shape, info = payload["teacher_shape"], payload["device"]
    ceil = payload["ceilings"]
    print(f"device: {info['name']}  date: {info['date']}")
    print(f"teacher: {shape['preset']} ({'full shape' if shape['full_shape'] else 'shrunk'}: {shape['n_layers']} layers, "
          f"vocab {shape['vocab_size']}, {shape['parameters'] / 1e9:.2f} B weights), {payload['config']['quant']}, "
          f"{payload['quantized_bytes'] / 1e9:.2f} GB quantized, built in {payload['build_s']:.1f} s")
    print(f"ceilings: copy {ceil['copy_bandwidth']['per_s'] / 1e9:.1f} GB/s, matmul "
          f"{ceil['matmul_rate']['per_s'] / 1e12:.2f} TFLOP/s ({payload['config']['dtype']}); compute floor of a forward "
          f"{payload['compute_floor']['seconds'] * 1e3:.2f} ms ({payload['compute_floor']['total'] / 1e12:.2f} TFLOP)")
    rows = [[name, f"{r['ms_per_forward']:.2f}", f"{r['ratio_to_compute_floor']:.2f}", f"{r['tokens_per_s']:.0f}",
             models.gib(r["resident_bytes"]), models.gib(r["forward_peak_extra_bytes"]), f"{r['load_s']:.2f}"]
            for name, r in payload["backends"].items()]
    print(report.format_table(["backend", "ms/forward", "x floor", "tokens/s", "resident GiB", "fwd peak GiB", "load s"],
                              rows))
    agreement = payload["backend_logits_agreement"]
    print(f"q4k-native / dequant time: {payload['q4k_native_over_dequant_time']:.2f}x; logits agreement: cosine "
          f"{agreement['cosine']:.6f}, max abs diff {agreement['max_abs_diff']:.3g}")
    d = payload["dequantization"]
    print(f"dequantization to bf16: {d['tensors']} tensors, {(d['bytes_read'] + d['bytes_written']) / 1e9:.2f} GB moved in "
          f"{d['timing']['median_s'] * 1e3:.2f} ms = {d['bytes_per_s'] / 1e9:.1f} GB/s = "
          f"{d['fraction_of_copy_bandwidth']:.2f} of copy bandwidth; bit-exact sample: "
          f"{d['bit_exact']['mismatches']} mismatches in {d['bit_exact']['elements_checked']} elements")
    print(report.format_targets(payload["targets"]))


if __name__ == "__main__":
    sys.exit(main())

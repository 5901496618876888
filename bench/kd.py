"""KD loss, forward plus backward: ``distill.kd.kd_loss`` against plain PyTorch and Liger-Kernel.

On logits ``[rows, vocab]`` (default on a GPU: [8192, 151936], the student's
vocabulary at batch 32 x 256) in each dtype asked for, every implementation
runs forward and backward on the same inputs:

- ``kd_loss``: ours (``distill.kd.kd_loss``, kernel auto: the fused Triton kernels
  on CUDA, the chunked PyTorch path elsewhere); ``kd_loss-torch`` and
  ``kd_loss-triton`` force one path (Triton only on CUDA: in the interpreter on
  CPU it is checked in the tests, never timed);
- ``torch``: plain PyTorch, ``log_softmax`` of both (in float32) and
  ``kl_div(reduction="batchmean", log_target=True)``, times T^2;
- ``liger-kldiv``: Liger-Kernel's ``LigerKLDIVLoss`` on the same float32
  log-softmaxes; ``liger-jsd``: ``LigerJSD(beta=0)`` (forward KL), likewise.
  Reported as "not installed" or "needs CUDA" when it cannot run, never faked.

For each: median time, peak memory allocated beyond the inputs (the gradient
dS included: see ``hardware.peak_extra_bytes``), and agreement of loss and
gradient with the plain PyTorch result. The roofline is the two-pass byte
model (forward reads S and T; backward reads S and T again and writes dS)
over the copy bandwidth measured in the same run. Targets (issue 7): at most
2x that roofline, at least as fast as Liger, peak extra at most 1.25x one
logits tensor; and the gradient within 1e-2 (relative) of plain PyTorch's.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, report  # noqa: E402

GPU_SHAPE = (8192, 151936)
CPU_SHAPE = (512, 151936)
BYTE_MODEL = ("two passes: the forward reads S and T, the backward reads S and T again and writes dS; "
              "bytes = 2*(|S| + |T|) + |dS|, each the size of one logits tensor in the input dtype")
ROOFLINE_LIMIT = 2.0
PEAK_LIMIT = 1.25
#: ||grad - grad_torch|| / ||grad_torch|| allowed: a fast but wrong kd_loss must not pass.
AGREEMENT_LIMIT = 1e-2

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Unavailable(Exception):
    """An implementation that cannot run here; the message says why."""


def _ours(kernel: str) -> Callable[[float], LossFn]:
    def factory(temperature: float) -> LossFn:
        from distill.kd import kd_loss

        def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if kernel == "triton" and s.device.type != "cuda":
                raise Unavailable("needs CUDA (the interpreter on CPU is for correctness, not speed)")
            return kd_loss(s, t, temperature, kernel=kernel)

        return loss

    return factory


def _log_softmaxes(s: torch.Tensor, t: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    return F.log_softmax(s.float() / temperature, dim=-1), F.log_softmax(t.float() / temperature, dim=-1)


def _plain_torch(temperature: float) -> LossFn:
    def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_q, log_p = _log_softmaxes(s, t, temperature)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2

    return loss


def _liger(build: Callable[[Any], torch.nn.Module]) -> Callable[[float], LossFn]:
    def factory(temperature: float) -> LossFn:
        try:
            import liger_kernel.transformers as liger
        except ImportError as exc:
            raise Unavailable(f"not installed ({exc.msg})") from None
        except Exception as exc:  # an installed version that cannot load here
            raise Unavailable(f"cannot be imported ({type(exc).__name__}: {exc})") from None
        module = build(liger)

        def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if s.device.type != "cuda":
                raise Unavailable("needs CUDA (Triton kernels)")
            log_q, log_p = _log_softmaxes(s, t, temperature)
            return module(log_q, log_p) * temperature**2

        return loss

    return factory


#: name -> factory(temperature) -> loss function. ``torch`` is the baseline of the agreement columns.
IMPLEMENTATIONS: dict[str, Callable[[float], LossFn]] = {
    "kd_loss": _ours("auto"),
    "kd_loss-torch": _ours("torch"),
    "kd_loss-triton": _ours("triton"),
    "torch": _plain_torch,
    "liger-kldiv": _liger(lambda liger: liger.LigerKLDIVLoss(reduction="batchmean", log_target=True)),
    "liger-jsd": _liger(lambda liger: liger.LigerJSD(beta=0.0)),
}
BASELINE = "torch"


def make_inputs(rows: int, vocab: int, dtype: torch.dtype, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Student (requires grad) and teacher logits: random normal, spread like real logits (std 3)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    student = (torch.randn(rows, vocab, generator=gen, device=device, dtype=dtype) * 3).requires_grad_(True)
    teacher = torch.randn(rows, vocab, generator=gen, device=device, dtype=dtype) * 3
    return student, teacher


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _rel_diff(value: torch.Tensor, reference: torch.Tensor, chunk_rows: int = 256) -> float:
    """||value - reference|| / ||reference|| in float64, a few rows at a time (no logits-sized float64 copy)."""
    width = reference.shape[-1] if reference.dim() else 1
    value, reference = value.reshape(-1, width), reference.reshape(-1, width)
    diff = norm = 0.0
    for start in range(0, reference.shape[0], chunk_rows):
        ref = reference[start:start + chunk_rows].double()
        diff += float((value[start:start + chunk_rows].double() - ref).square().sum())
        norm += float(ref.square().sum())
    return (diff / norm) ** 0.5 if norm > 0 else float(diff > 0)


def measure_one(loss_fn: LossFn, student: torch.Tensor, teacher: torch.Tensor, device: torch.device,
                args: argparse.Namespace) -> dict[str, Any]:
    """Time forward+backward, then one more run for peak memory; keep the loss and gradient for agreement."""

    def step() -> torch.Tensor:
        student.grad = None
        loss = loss_fn(student, teacher)
        loss.backward()
        return loss.detach()

    step()  # a first run raises Unavailable before any timing
    timing = hardware.time_fn(step, device, warmup=args.warmup, repeats=args.repeats)
    student.grad = None
    _release(device)
    loss, peak, method = hardware.peak_extra_bytes(step, device)
    grad = student.grad
    student.grad = None
    return {"timing": timing.to_json(), "peak_extra_bytes": peak, "memory_method": method,
            "loss": float(loss), "_loss": loss, "_grad": grad}


def run_case(dtype: torch.dtype, device: torch.device, bandwidth: float, args: argparse.Namespace) -> dict[str, Any]:
    """All implementations on one dtype; ratios to the roofline and to each other, and the targets."""
    student, teacher = make_inputs(args.rows, args.vocab, dtype, device, args.seed)
    logits_bytes = student.numel() * student.element_size()
    roofline_bytes = 2 * (2 * logits_bytes) + logits_bytes
    roofline_s = roofline_bytes / bandwidth
    results: dict[str, dict[str, Any]] = {}
    for name in args.impls:
        try:
            results[name] = {"status": "measured",
                             **measure_one(IMPLEMENTATIONS[name](args.temperature), student, teacher, device, args)}
        except Unavailable as exc:
            results[name] = {"status": "not available", "reason": str(exc)}
        except (RuntimeError, ValueError) as exc:  # out of memory, a kernel that fails to compile, ...
            results[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        student.grad = None
        _release(device)
    baseline = results.get(BASELINE, {})
    ours = results.get("kd_loss", {})
    for result in results.values():
        if result["status"] != "measured":
            continue
        median = result["timing"]["median_s"]
        result.update(
            peak_extra_vs_logits=result["peak_extra_bytes"] / logits_bytes,
            ratio_to_roofline=median / roofline_s,
            achieved_bytes_per_s=roofline_bytes / median,
            time_vs_kd_loss=report.ratio(median, ours.get("timing", {}).get("median_s")),
        )
        if baseline.get("status") == "measured":
            result.update(loss_rel_diff_vs_torch=_rel_diff(result["_loss"], baseline["_loss"]),
                          grad_rel_diff_vs_torch=_rel_diff(result["_grad"], baseline["_grad"]))
    for result in results.values():
        result.pop("_loss", None)
        result.pop("_grad", None)
    del student, teacher
    _release(device)
    return {"dtype": report.dtype_name(dtype), "rows": args.rows, "vocab": args.vocab, "logits_bytes": logits_bytes,
            "roofline_bytes": roofline_bytes, "roofline_s": roofline_s,
            "implementations": [{"name": name, **result} for name, result in results.items()],
            "targets": _targets(results)}


def _targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ours = results.get("kd_loss", {"status": "not run", "reason": "kd_loss not selected"})
    measured = ours["status"] == "measured"
    why = None if measured else ours.get("reason", ours["status"])
    liger = [r for n, r in results.items() if n.startswith("liger") and r["status"] == "measured"]
    liger_why = next((r.get("reason") for n, r in results.items() if n.startswith("liger")), "liger not selected")
    fastest_liger = min((r["timing"]["median_s"] for r in liger), default=None)
    plain = results.get(BASELINE, {})
    plain_why = None if plain.get("status") == "measured" else "plain PyTorch not measured"
    return [
        report.target("kd_loss time / plain PyTorch time (CPU target)",
                      report.ratio(ours.get("timing", {}).get("median_s"), plain.get("timing", {}).get("median_s")),
                      1.0, "<=", unit="x", missing=why or plain_why),
        report.target("kd_loss time / two-pass roofline", ours.get("ratio_to_roofline"), ROOFLINE_LIMIT, "<=",
                      unit="x", missing=why),
        report.target("kd_loss time / fastest Liger time",
                      report.ratio(ours.get("timing", {}).get("median_s"), fastest_liger), 1.0, "<=", unit="x",
                      missing=why or (None if liger else liger_why)),
        report.target("kd_loss peak extra / one logits tensor", ours.get("peak_extra_vs_logits"), PEAK_LIMIT, "<=",
                      unit="x", missing=why),
        report.target("kd_loss gradient vs plain PyTorch (relative)", ours.get("grad_rel_diff_vs_torch"),
                      AGREEMENT_LIMIT, "<=", missing=why or "plain PyTorch not measured"),
    ]


def _table(case: dict[str, Any]) -> str:
    rows = []
    for impl in case["implementations"]:
        if impl["status"] != "measured":
            rows.append([impl["name"], impl["reason"], "", "", "", "", ""])
            continue
        rows.append([
            impl["name"], f"{impl['timing']['median_s'] * 1e3:.3f}", f"{impl['ratio_to_roofline']:.2f}",
            f"{impl['time_vs_kd_loss']:.2f}" if impl["time_vs_kd_loss"] is not None else "-",
            f"{impl['peak_extra_bytes'] / 2**20:.1f}", f"{impl['peak_extra_vs_logits']:.2f}",
            f"{impl.get('grad_rel_diff_vs_torch', float('nan')):.1e}",
        ])
    return report.format_table(
        ["impl", "ms", "x roofline", "x kd_loss", "peak extra MiB", "x logits", "grad rel diff"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    report.add_timing_arguments(parser, repeats=10, warmup=2)
    parser.add_argument("--rows", type=report.positive_int, default=None,
                        help=f"positions (default {GPU_SHAPE[0]} on a GPU, {CPU_SHAPE[0]} on CPU)")
    parser.add_argument("--vocab", type=report.positive_int, default=None, help=f"vocabulary (default {GPU_SHAPE[1]})")
    parser.add_argument("--dtypes", default="bf16,f32", help="comma-separated input dtypes (default bf16,f32)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated implementations (default all: {','.join(IMPLEMENTATIONS)})")
    parser.add_argument("--copy-mib", type=int, default=None, help="buffer of the bandwidth measurement in MiB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return report.run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    device = hardware.resolve_device(args.device)
    default_rows, default_vocab = GPU_SHAPE if device.type == "cuda" else CPU_SHAPE
    args.rows, args.vocab = args.rows or default_rows, args.vocab or default_vocab
    dtypes = [report.parse_dtype(name.strip()) for name in args.dtypes.split(",") if name.strip()]
    args.impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    unknown = [name for name in args.impls if name not in IMPLEMENTATIONS]
    if unknown or not args.impls or not dtypes:
        raise report.BenchError(f"--impls: unknown {unknown}; choose from {', '.join(IMPLEMENTATIONS)}"
                                if unknown else "--impls and --dtypes must name at least one")
    if not args.temperature > 0:
        raise report.BenchError(f"--temperature must be > 0, got {args.temperature}")
    info = hardware.device_info(device)
    bandwidth = hardware.copy_bandwidth(device, (args.copy_mib << 20) if args.copy_mib else None)
    cases = [run_case(dtype, device, bandwidth.per_s, args) for dtype in dtypes]
    print(f"device: {info['name']}  date: {info['date']}  copy bandwidth: {bandwidth.per_s / 1e9:.1f} GB/s")
    print(f"byte model: {BYTE_MODEL}")
    for case in cases:
        print(f"\nlogits [{case['rows']}, {case['vocab']}] {case['dtype']}: roofline {case['roofline_s'] * 1e3:.3f} ms "
              f"({case['roofline_bytes'] / 1e9:.2f} GB)")
        print(_table(case))
        print(report.format_targets(case["targets"]))
    config = {k: getattr(args, k) for k in ("rows", "vocab", "temperature", "repeats", "warmup", "seed", "impls")}
    payload = {"benchmark": "kd", "device": info, "config": {**config, "dtypes": [report.dtype_name(d) for d in dtypes]},
               "ceilings": {"copy_bandwidth": bandwidth.to_json()}, "byte_model": BYTE_MODEL, "cases": cases}
    print(f"wrote {report.write_json(args.out, f'kd-{hardware.device_tag(info)}', payload)}")
    failed = [f"{case['dtype']} {impl['name']}: {impl['reason']}" for case in cases
              for impl in case["implementations"] if impl["status"] == "failed"]
    if failed:
        raise report.BenchFailed("; ".join(failed))
    return payload


if __name__ == "__main__":
    sys.exit(main())

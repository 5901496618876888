"""Distillation steps: a 7B-shaped Q4_K teacher and a 0.5B-shaped student, N real KD steps.

Both models are built on the device from random weights (``distill.synth``;
the teacher quantized there, no file); the teacher is loaded with the backend
that ``distill.dispatch`` chooses for this device (or ``--backend``), its
logits cut to the student's vocabulary (152064 -> 151936 rows at full
shape); then ``--steps`` steps of the training loop's own step function
(teacher logits, student forward, ``kd_loss``, backward, AdamW) on random
ids (default batch 32 x 256).

Reported: seconds per step (first step apart, then median and mean of the
rest), tokens per second, the projected time of a 500-step run (first step
+ 499 x the mean of the others), peak memory (on a GPU the CUDA allocator's
peak over all steps; everywhere the memory live at the start of one more
step plus that step's peak extra), the teacher's resident bytes, and the
losses (all finite, first and last). Target (issue 7): under 1.0 s per step
on an H100 at the full shapes.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, models, report  # noqa: E402

STEP_LIMIT_S = 1.0
PROJECTED_STEPS = 500
STUDENT_DTYPES = ("f32", "bf16")


def _step_function():
    """The training loop's step function: ``step(student, teacher, optimizer, ids, temperature, index) -> loss``."""
    from distill import train

    return getattr(train, "train_step", None) or train._step


def choose_backend(requested: str, model, device: torch.device, dtype: torch.dtype, student_state_bytes: int):
    """The teacher backend decision of ``distill.dispatch`` for this device and its free memory."""
    from distill.dispatch import classify_device, decide_teacher_backend
    from distill.teacher import dequantized_bytes, is_quantized

    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    else:
        import os

        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    inputs = {"override": requested, "device_class": classify_device(device), "teacher_quantized": is_quantized(model),
              "dequant_bytes": dequantized_bytes(model, dtype), "free_bytes": max(0, free - student_state_bytes)}
    return decide_teacher_backend(**inputs), inputs


def build_student(config, dtype: torch.dtype, device: torch.device, seed: int) -> torch.nn.Module:
    """A trainable student of random f32 weights, parameters in ``dtype``."""
    from distill.model import build_model

    model = models.synth_model(config, "f32", seed, device)
    student = build_model(config, model.tensors, dtype=dtype, device=device, keep_quantized=False)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student.train()


def training_state_tensors(student: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The student's parameters, gradients and optimizer state: what a step keeps between steps."""
    tensors = [p for p in student.parameters()] + [p.grad for p in student.parameters() if p.grad is not None]
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    models.add_shape_arguments(parser, "teacher", models.TEACHER_PRESET)
    models.add_shape_arguments(parser, "student", models.STUDENT_PRESET)
    parser.add_argument("--steps", type=report.positive_int, default=100)
    parser.add_argument("--batch", type=report.positive_int, default=32)
    parser.add_argument("--seq", type=report.positive_int, default=256)
    parser.add_argument("--quant", default="q4_k", help="teacher weights: q4_k or q4_k_m (default q4_k)")
    parser.add_argument("--backend", default="auto", help="teacher backend: auto, dequant or q4k-native")
    parser.add_argument("--student-dtype", default="f32", choices=STUDENT_DTYPES)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return report.run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from distill.errors import TrainingDiverged
    from distill.teacher import load_teacher

    device = hardware.resolve_device(args.device)
    teacher_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    teacher_config, student_config = models.shape(args, "teacher"), models.shape(args, "student")
    if student_config.vocab_size > teacher_config.vocab_size:
        raise report.BenchError(f"the student's vocabulary ({student_config.vocab_size}) exceeds the teacher's "
                                f"({teacher_config.vocab_size})")
    info = hardware.device_info(device)
    start = time.perf_counter()
    student = build_student(student_config, report.parse_dtype(args.student_dtype), device, args.seed + 2)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr)
    student_state = 4 * hardware.module_storage_bytes(student)  # weights, gradients, two AdamW moments
    teacher_model = models.synth_model(teacher_config, args.quant, args.seed + 1, device)
    decision, decision_inputs = choose_backend(args.backend, teacher_model, device, teacher_dtype, student_state)
    teacher = load_teacher(teacher_model, decision.backend, target_vocab=student_config.vocab_size, device=device,
                           dtype=teacher_dtype)
    quantized_bytes = teacher_model.quantized_bytes
    del teacher_model
    gc.collect()
    hardware.synchronize(device)
    setup_s = time.perf_counter() - start
    step = _step_function()
    gen = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, student_config.vocab_size, (args.batch, args.seq), generator=gen) for _ in range(4)]

    def one_step(index: int) -> float:
        return step(student, teacher, optimizer, batches[index % len(batches)].to(device), args.temperature, index)

    losses, times, diverged = [], [], None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for index in range(args.steps):
            t0 = time.perf_counter()
            losses.append(one_step(index))
            hardware.synchronize(device)
            times.append(time.perf_counter() - t0)
    except TrainingDiverged as exc:
        diverged = {"step": len(losses), "message": str(exc)}
    run_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    memory = _step_memory(one_step, args.steps, student, optimizer, teacher, device) if diverged is None else {}
    payload = {
        "benchmark": "distill_steps",
        "device": info,
        "config": {k: getattr(args, k) for k in ("steps", "batch", "seq", "quant", "backend", "student_dtype",
                                                 "temperature", "lr", "seed")},
        "teacher_shape": models.describe(teacher_config, args.teacher_preset),
        "student_shape": models.describe(student_config, args.student_preset),
        "teacher_dtype": report.dtype_name(teacher_dtype),
        "backend_decision": {**decision.to_json(), **decision_inputs},
        "teacher_vocab_effective": teacher.vocab_size,
        "teacher_resident_bytes": teacher.resident_bytes(),
        "teacher_quantized_bytes": quantized_bytes,
        "setup_s": setup_s,
        "steps": _step_figures(times, args.batch * args.seq),
        "losses": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None,
                   "all_finite": diverged is None and all(math.isfinite(x) for x in losses),
                   "values": losses, "diverged": diverged},
        "memory": {**memory, "cuda_peak_allocated_over_steps_bytes": run_peak},
    }
    payload["targets"] = [
        report.target("median seconds per step", payload["steps"].get("median_s"), STEP_LIMIT_S, "<=", unit="s",
                      missing=None if times else "no step completed"),
        report.target("all losses finite", 1.0 if payload["losses"]["all_finite"] else 0.0, 1.0, ">="),
    ]
    _print(payload)
    print(f"wrote {report.write_json(args.out, f'distill_steps-{hardware.device_tag(info)}', payload)}")
    return payload


def _step_memory(one_step, index: int, student, optimizer, teacher, device: torch.device) -> dict[str, Any]:
    """Memory live at the start of one more step (allocator, or tensor storage on CPU) plus that step's peak extra."""
    if device.type == "cuda":
        live, live_method = hardware.allocated_bytes(device), "cuda allocator (memory_allocated)"
    else:
        live = hardware.storage_bytes([*training_state_tensors(student, optimizer)]) + teacher.resident_bytes()
        live_method = "tensor storage of the student, its gradients, the AdamW state and the teacher"
    _, extra, extra_method = hardware.peak_extra_bytes(lambda: one_step(index), device)
    return {"live_at_step_start_bytes": live, "live_method": live_method, "step_peak_extra_bytes": extra,
            "step_peak_extra_method": extra_method, "peak_bytes": live + extra}


def _step_figures(times: list[float], tokens: int) -> dict[str, Any]:
    if not times:
        return {"completed": 0}
    rest = times[1:] or times
    mean_rest = models.mean(rest)
    return {"completed": len(times), "first_s": times[0], "median_s": statistics.median(rest), "mean_s": mean_rest,
            "min_s": min(rest), "max_s": max(rest), "tokens_per_s": tokens / mean_rest,
            "projected_500_steps_s": times[0] + (PROJECTED_STEPS - 1) * mean_rest,
            "projection": "first step + 499 x the mean of the steps after the first", "times_s": times}


def _print(payload: dict[str, Any]) -> None:
    info, teacher, student = payload["device"], payload["teacher_shape"], payload["student_shape"]
    print(f"device: {info['name']}  date: {info['date']}")
    for role, shape in (("teacher", teacher), ("student", student)):
        print(f"{role}: {shape['preset']} ({'full shape' if shape['full_shape'] else 'shrunk'}: {shape['n_layers']} "
              f"layers, vocab {shape['vocab_size']}, {shape['parameters'] / 1e9:.3f} B weights)")
    decision = payload["backend_decision"]
    print(f"teacher backend: {decision['backend']} ({decision.get('reason', '')}); setup {payload['setup_s']:.1f} s")
    steps, memory, losses = payload["steps"], payload["memory"], payload["losses"]
    rows = []
    if steps.get("completed"):
        rows = [["steps", steps["completed"]], ["first step s", f"{steps['first_s']:.3f}"],
                ["median s/step", f"{steps['median_s']:.3f}"], ["mean s/step", f"{steps['mean_s']:.3f}"],
                ["tokens/s", f"{steps['tokens_per_s']:.0f}"],
                ["projected 500 steps", f"{steps['projected_500_steps_s'] / 60:.1f} min"]]
    rows += [["peak memory GiB", models.gib(memory.get("peak_bytes"))],
             ["teacher resident GiB", models.gib(payload["teacher_resident_bytes"])],
             ["loss first -> last", f"{losses['first']} -> {losses['last']}"], ["all finite", losses["all_finite"]]]
    print(report.format_table(["figure", "value"], rows))
    print(report.format_targets(payload["targets"]))


if __name__ == "__main__":
    sys.exit(main())

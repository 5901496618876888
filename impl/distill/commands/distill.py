"""Distil a teacher GGUF into a student GGUF with the KD loss; write a log, a summary and the student.

The teacher's backend comes from --backend, else DISTILL_TEACHER_BACKEND, else
auto; the choice and its reason are printed first, then the vocabulary
alignment. A pair whose student tokens are not a prefix of the teacher's is
refused before step 0. The output folder receives train_log.jsonl (a header and
one record per step), student.safetensors (only when every step completed) and
run.json (status completed, interrupted or failed). Exit 0 when the run
completed, 1 when the loss diverged (NaN or Inf), 2 for bad input, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pv._util.errors import UserError

PRESET_PAIRS = ("tiny",)
BACKEND_CHOICES = ("auto", "dequant", "q4k-native")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (give --teacher and --student, or --preset-pair)")
    models.add_argument("--teacher", type=Path, metavar="T.gguf", help="the teacher's GGUF file")
    models.add_argument("--student", type=Path, metavar="S.gguf", help="the student's GGUF file")
    models.add_argument("--preset-pair", choices=PRESET_PAIRS,
                        help="build a small quantized teacher and a student on the fly into the output folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps (default 50)")
    parser.add_argument("--batch", type=int, default=2, help="sequences per step (default 2)")
    parser.add_argument("--seq", type=int, default=32, help="tokens per sequence (default 32)")
    parser.add_argument("--temperature", type=float, default=1.0, help="KD temperature T (default 1.0)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES,
                        help="teacher backend (default: $DISTILL_TEACHER_BACKEND, else auto)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--data", type=Path, metavar="FILE",
                        help="token ids: .npy integer array or whitespace-separated text (default: random ids)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and preset models (default 0)")
    parser.add_argument("--student-dtype", choices=("f32", "bf16"), default="f32",
                        help="dtype of the student's trainable parameters (default f32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from distill.errors import DistillError, TrainingDiverged
    from distill.train import DistillConfig, run_distillation

    if args.preset_pair is None and (args.teacher is None or args.student is None):
        raise UserError("give --teacher and --student, or --preset-pair")
    if args.preset_pair is not None and (args.teacher is not None or args.student is not None):
        raise UserError("--preset-pair builds its own models: do not combine it with --teacher/--student")
    config = DistillConfig(
        out_dir=args.out,
        teacher=args.teacher,
        student=args.student,
        preset_pair=args.preset_pair,
        steps=args.steps,
        batch=args.batch,
        seq=args.seq,
        temperature=args.temperature,
        lr=args.lr,
        backend=args.backend,
        device=args.device,
        data=args.data,
        seed=args.seed,
        student_dtype=args.student_dtype,
        progress=not args.no_progress,
    )
    try:
        result = run_distillation(config, echo=lambda line: print(line, flush=True))
    except TrainingDiverged as err:
        raise UserError(f"{err} (summary in {args.out / 'run.json'})", exit_code=1) from None
    except DistillError as err:
        raise UserError(str(err)) from None
    except OSError as err:  # a folder that cannot be created, a full disk: run.json says how far it got
        raise UserError(f"cannot write the run's files: {err}") from None
    losses, times = result.losses, result.step_times
    print(
        f"completed {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
        f"mean step {sum(times) / len(times):.4f} s; student written to {result.checkpoint}"
    )
    return 0

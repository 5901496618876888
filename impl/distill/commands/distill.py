"""Distil a teacher GGUF into a student GGUF with the KD loss; write a log, checkpoints, a summary and the student.

The teacher's backend comes from --backend, else DISTILL_TEACHER_BACKEND, else
auto; the choice and its reason are printed first, then the vocabulary
alignment. A pair whose student tokens are not a prefix of the teacher's is
refused before step 0. The output folder receives train_log.jsonl (a header and
one record per step), checkpoints/step-N every --checkpoint-every steps (the
last --keep of them), student.safetensors (only when every step completed) with
the same student as student-trained.gguf (--student-format, with the starting
student's tokenizer and metadata) and as config.json + model.safetensors for
Hugging Face transformers, run.json (status running, completed, interrupted or failed),
curves.png, summary.md and initial_student.gguf (the student it started from, the
baseline of `pv eval RUN_DIR`). --data gives token ids or text (stdlib, a file, a
folder, JSONL), text tokenized with the student's own GGUF tokenizer (pv tokenize
shows its ids). With --eval-every N a fraction of the data's documents (--holdout,
default 0.1, fixed by --seed) is held out of training; the student is evaluated
on it every N steps (eval records in the log, the first and last in run.json
with whether the student improved).

Data parallel: run it under `torchrun --nproc-per-node N` (or give --nproc N,
which launches through torch's own launcher): every rank holds the teacher and
a DDP student and reads its own shard; --batch is per rank and micro-batch, so
a step reads batch x grad-accum x ranks sequences. Only rank 0 writes.

Resume: `pv distill --resume DIR` continues the run in DIR from its newest
checkpoint (from step 0 when it has none) with the options it was started
with (its --nproc included); give --steps N to train further. Options given with --resume replace
the run's; a changed teacher, student, data file, vocabulary decision, --seq,
--temperature, --lr, --seed, --student-dtype, --amp or global batch is refused
with the difference named. A plain run into a folder that holds a run is
refused. Exit 0 when the run completed, 1 when the loss diverged (NaN or Inf),
2 for bad input, 128+n when signal n stopped it (130 Ctrl-C, 143 SIGTERM, 129
SIGHUP; run.json then says interrupted, and a final checkpoint holds the
steps done).

Training: AdamW at --lr, with --warmup-steps of linear warm-up and a
--lr-schedule (constant, or cosine decay to 0 at the last step); gradients
clipped to --max-grad-norm; each step's lr and gradient norm are logged. Before
step 0 an estimate of the peak memory is printed, after it the measured time
per step; without a progress bar (--no-progress, or stderr not a terminal) a
plain progress line every --log-every steps.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pv._util.errors import UserError

PRESET_PAIRS = ("tiny",)
BACKEND_CHOICES = ("auto", "dequant", "q4k-native")
#: defaults of a new run; a resumed run takes its own instead
DEFAULTS = {"steps": 50, "batch": 2, "seq": 32, "temperature": 1.0, "lr": 1e-3, "device": "cpu", "seed": 0,
            "student_dtype": "f32", "grad_accum": 1, "keep": 3, "lr_schedule": "constant", "warmup_steps": 0,
            "max_grad_norm": 1.0, "log_every": 10}
#: options that set a field of the run's configuration (named like the field)
CONFIG_OPTIONS = ("teacher", "student", "preset_pair", "steps", "batch", "seq", "temperature", "lr", "backend",
                  "device", "data", "seed", "student_dtype", "grad_accum", "amp", "checkpoint_every", "keep",
                  "lr_schedule", "warmup_steps", "max_grad_norm", "log_every",
                  "student_format", "eval_every", "holdout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (give --teacher and --student, or --preset-pair)")
    models.add_argument("--teacher", type=Path, metavar="T.gguf", help="the teacher's GGUF file")
    models.add_argument("--student", type=Path, metavar="S.gguf", help="the student's GGUF file")
    models.add_argument("--preset-pair", choices=PRESET_PAIRS,
                        help="build a small quantized teacher and a student on the fly into the output folder")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (required unless --resume)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    parser.add_argument("--steps", type=int, help="optimizer steps of the whole run (default 50)")
    parser.add_argument("--batch", type=int, help="sequences per rank and micro-batch (default 2)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default 32)")
    parser.add_argument("--temperature", type=float, help="KD temperature T (default 1.0)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES,
                        help="teacher backend (default: $DISTILL_TEACHER_BACKEND, else auto)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default cpu; each rank of a CUDA run uses "
                                         "cuda:LOCAL_RANK)")
    parser.add_argument("--data", type=Path, metavar="DATA",
                        help="'stdlib' (the Python standard library's source), a text file, a folder of text files, "
                             "JSONL with a 'text' field, or token ids (.npy, whitespace-separated integers); text is "
                             "tokenized with the student's tokenizer, documents joined by its end-of-text token "
                             "(default: random ids)")
    parser.add_argument("--seed", type=int, help="seed of the data and preset models (default 0)")
    parser.add_argument("--student-dtype", choices=("f32", "bf16"),
                        help="dtype of the student's trainable parameters (default f32)")
    parser.add_argument("--student-format", choices=("bf16", "f16", "f32", "q4_k_m"),
                        help="tensor format of student-trained.gguf (default bf16: the trained weights' exponent "
                             "range, as Qwen2.5 is published; f16 for backends without bf16; q4_k_m as llama.cpp's)")
    parser.add_argument("--grad-accum", type=int, metavar="K", help="micro-batches per optimizer step (default 1)")
    parser.add_argument("--amp", choices=("bf16",), help="run the student's forward under bf16 autocast")
    parser.add_argument("--checkpoint-every", type=int, metavar="S",
                        help="write a checkpoint every S steps and at the end (default: none)")
    parser.add_argument("--keep", type=int, help="checkpoints kept, newest first (default 3)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="learning rate after the warm-up: constant, or cosine decay to 0 at the last step "
                             "(default constant)")
    parser.add_argument("--warmup-steps", type=int, metavar="W",
                        help="steps of linear learning-rate warm-up (default 0)")
    parser.add_argument("--max-grad-norm", type=float, metavar="X",
                        help="clip the gradients to this global norm, logged per step as grad_norm (default 1.0; "
                             "0: measure without clipping)")
    parser.add_argument("--log-every", type=int, metavar="N",
                        help="print a progress line every N steps when no progress bar is shown (default 10; 0: "
                             "never)")
    parser.add_argument("--force", action="store_true",
                        help="load an explicitly requested --backend dequant teacher that the memory check refuses")
    parser.add_argument("--eval-every", type=int, metavar="N",
                        help="evaluate the student on held-out data every N steps, before step 0 and at the end")
    parser.add_argument("--holdout", type=float, metavar="F",
                        help="fraction of the data's documents held out of training (default 0.1 with --eval-every)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="run N data-parallel ranks on this machine through torch.distributed.run (a resume "
                             "uses the run's own)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _given(args: argparse.Namespace) -> dict:
    given = {name: getattr(args, name) for name in CONFIG_OPTIONS if getattr(args, name) is not None}
    if given.get("max_grad_norm") == 0:
        given["max_grad_norm"] = None
    return given


def _config(args: argparse.Namespace):
    from distill.train import DistillConfig, resume_config

    given = _given(args)
    if args.resume is not None:
        if args.out is not None and Path(args.out) != Path(args.resume):
            raise UserError("--resume DIR continues the run in DIR: do not give another --out")
        return resume_config(args.resume, {**given, "progress": not args.no_progress, "force": args.force})
    if args.out is None:
        raise UserError("give --out DIR (or --resume DIR)")
    if args.preset_pair is None and (args.teacher is None or args.student is None):
        raise UserError("give --teacher and --student, or --preset-pair")
    if args.preset_pair is not None and (args.teacher is not None or args.student is not None):
        raise UserError("--preset-pair builds its own models: do not combine it with --teacher/--student")
    return DistillConfig(out_dir=args.out, **{**DEFAULTS, **given}, progress=not args.no_progress, force=args.force)


def _rank_argv(args: argparse.Namespace) -> list[str]:
    """The command line each rank of ``--nproc`` runs: these options without --nproc."""
    argv = ["pv", "distill"]
    for name, value in _given(args).items():
        argv += [f"--{name.replace('_', '-')}", "0" if value is None else str(value)]
    for name in ("out", "resume"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    return argv + (["--no-progress"] if args.no_progress else []) + (["--force"] if args.force else [])


def run(args: argparse.Namespace) -> int:
    from distill.errors import DistillError, TrainingDiverged
    from distill.export import GGUF_FILE, HF_CONFIG_FILE
    from distill.train import RunInterrupted, check_config, run_distillation

    rank = int(os.environ["RANK"]) if os.environ.get("RANK", "").isdigit() else 0
    where = "" if rank == 0 else f"rank {rank}: "
    try:
        config = _config(args)
        nproc = args.nproc
        if nproc is None and args.resume is not None and "WORLD_SIZE" not in os.environ and (config.nproc or 1) > 1:
            nproc = config.nproc  # a resume launches the ranks the run had
            print(f"resuming with --nproc {nproc}, the run's own", flush=True)
        if nproc is not None:
            if nproc < 1:
                raise UserError(f"--nproc must be >= 1, got {nproc}")
            if "WORLD_SIZE" in os.environ:
                raise UserError("--nproc launches its own ranks: do not give it under torchrun")
            check_config(config)  # refuse bad input once, before any rank starts
            from distill.parallel import launch

            return launch(nproc, _rank_argv(args))
        result = run_distillation(config, echo=lambda line: print(line, flush=True))
    except TrainingDiverged as err:
        raise UserError(f"{where}{err} (summary in {Path(args.resume or args.out) / 'run.json'})", exit_code=1) from None
    except DistillError as err:
        raise UserError(f"{where}{err}") from None
    except RunInterrupted as err:
        folder = Path(args.resume or args.out)
        if rank == 0:
            print(f"pv distill: {err}; run.json in {folder} says how far it got; continue with "
                  f"pv distill --resume {folder}", file=sys.stderr, flush=True)
        return 128 + err.signum
    except OSError as err:  # a folder that cannot be created, a full disk: run.json says how far it got
        raise UserError(f"{where}cannot write the run's files: {err}") from None
    if rank != 0:
        return 0
    losses, times = result.losses, result.step_times
    print(
        f"completed {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
        f"mean step {sum(times) / len(times):.4f} s; student written to {result.checkpoint} "
        f"(for llama.cpp: {result.checkpoint.parent / GGUF_FILE}; for transformers: {HF_CONFIG_FILE} beside it)"
    )
    evaluation = result.summary.get("eval")
    if evaluation:
        start, final = evaluation["start"], evaluation["final"]
        print(f"held-out KD loss {start['kd_loss']:.4f} (step {start['step']}) -> {final['kd_loss']:.4f} "
              f"(step {final['step']}), top-1 agreement {start['top1_agreement']:.4f} -> "
              f"{final['top1_agreement']:.4f}: {'improved' if evaluation['improved'] else 'NOT improved'} over the start")
    return 0

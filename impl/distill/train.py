"""The distillation loop: a frozen GGUF teacher, a trainable GGUF student, the KD loss, AdamW.

Start-up, in this order, before anything is written (bad input leaves no files):
join the ranks of a data-parallel run (``distill.parallel``; one rank without
a torch.distributed environment); read both GGUF files; compare their
vocabularies and refuse a pair whose student rows are not a prefix of the
teacher's (``distill.vocab``); choose the teacher backend (flag, else
``DISTILL_TEACHER_BACKEND``, else auto; see ``distill.dispatch``) and print it
as one line; on a resume, refuse a run whose teacher, student, data,
vocabulary decision or fixed options differ from the checkpoint's, naming each
difference; load the teacher with its logits cut to the student's rows; load
the student (quantized student weights are expanded; parameters in f32 or
bf16, all trainable); read the data.

Data: ``data`` names token ids (``.npy``, whitespace-separated integers) or
text (a file, a folder, JSONL, ``stdlib``) tokenized with the student's own
tokenizer, documents packed with an end-of-text token (``distill.data``),
read in shuffled epochs of ``seq``-id windows; without data, rows of
uniformly random ids. Step ``t``
reads the global rows ``[t*G, (t+1)*G)``, ``G = batch * grad_accum * ranks``,
and each rank its own slice of them (``distill.data``).

Held-out data (``holdout``, a fraction; 0.1 when only ``eval_every`` is given):
the documents of the data file (a token file has no document boundaries: its
documents are its ``seq``-id windows) are split once, by ``seed``
(``distill.data.split_documents``); training reads only the others whose ids equal
no held-out window's (``distill.data.disjoint_training``: a repeated window, such as a
licence header, is held out wherever it occurs). Every ``eval_every`` steps, before
step 0 and at the end, rank 0 evaluates the student against the teacher on the
held-out rows, at most 256 of them (``distill.evaluate``) and logs an
``eval`` record; run.json names the held-out documents, the first and last
evaluations and whether the student improved over its start. The student a run
starts from is kept in the run folder as ``initial_student.gguf`` (a hard link
where the file system allows, else a copy): the baseline of ``pv eval RUN_DIR``.

A step: each of ``grad_accum`` micro-batches of ``batch`` rows runs the student
(under bf16 autocast with ``amp="bf16"``) and the teacher, takes the KD loss,
and back-propagates it divided by ``grad_accum``; DDP averages the gradients
over the ranks at the last micro-batch; the gradients are clipped to the global
norm ``max_grad_norm``; then one AdamW step at the step's learning rate
(``distill.schedule``: warm-up, then constant or cosine decay). The logged loss is
the mean over micro-batches and ranks. A NaN or Inf loss stops the run
(TrainingDiverged) before the optimizer step, on every rank.

Before step 0 rank 0 prints an estimate of the peak memory (teacher, student
and AdamW state, one step's tensors), after step 0 the measured time per step,
and, when no progress bar is shown, a plain line every ``log_every`` steps.

Output folder (``out_dir``, claimed and checked by ``distill.run_folder``),
written by rank 0 only:
- ``train_log.jsonl``: a header record (backend decision, vocabulary
  alignment, configuration, the run's identity, the estimate), then one record
  per step (loss, learning rate, gradient norm before clipping, step time,
  memory: the CUDA allocator's peak on a GPU, the process's resident set on
  CPU), written and flushed as they happen; a resumed run keeps the records
  before its checkpoint and adds a ``resume`` record;
- ``checkpoints/step-NNNNNNNN``: every ``checkpoint_every`` steps and at the
  end, the last ``keep`` of them (``distill.checkpoints``);
- ``student.safetensors``: the trained student (its parameters by their
  ``distill.model.Qwen2`` names), written only when every step completed,
  through a temporary file and a rename (never half-written);
- ``student-trained.gguf``, ``config.json`` and ``model.safetensors``: the same
  student for llama.cpp (``student_format``, the starting student's metadata)
  and for Hugging Face transformers (``distill.export``), written with it;
- ``run.json``: the summary (status ``running``, ``completed``,
  ``interrupted`` or ``failed``, steps done, final loss, last checkpoint,
  error), written atomically at the start, at each checkpoint and at the end
  whatever happened; SIGINT, SIGTERM and SIGHUP end the run as ``interrupted``
  (``RunInterrupted``) after a final checkpoint of the steps done (the signal
  is held from the optimizer's update until the step is recorded; a step
  stopped before its update is undone, its rows read again by the resume);
  after a SIGKILL it says ``running`` and names the checkpoint a resume
  continues from;
- ``curves.png`` and ``summary.md``: the curves of the log (``distill.curves``) and a
  summary embedding them, rewritten at each checkpoint and at the end.

Resume (``resume=True``, see ``resume_config``): the run continues from its
newest checkpoint (student, optimizer, RNG and data states, step, each checked
against the student it restores), or from step 0 when it has none. The input
files are compared by the sha256 of every byte, and watched through the run: a
file changed under it fails the run with its name (a quantized teacher read
through the run is a copy in memory, never a mapping a truncation turns into
SIGBUS). On one CPU thread, 10 steps and a resume for 10 more
give bit for bit the student of 20 uninterrupted steps.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from distill import __version__
from distill.checkpoints import (
    CHECKPOINT_DIR,
    CONTRACT_VERSIONS,
    differences,
    file_fingerprint,
    list_checkpoints,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from distill.data import (
    STDLIB_CORPUS, Corpus, TokenStream, disjoint_training, read_corpus, shard_slice, split_documents, windows,
)
from distill.dispatch import (
    DEQUANT_RESERVE_BYTES,
    BackendDecision,
    available_bytes,
    backend_override_from_env,
    classify_device,
    decide_teacher_backend,
    format_start_line,
)
from distill.errors import DistillError, InsufficientMemoryError, TrainingDiverged, VocabAlignmentError
from distill.inputs import WatchedInputs
from distill.export import DEFAULT_STUDENT_FORMAT, check_student_format, export_student
from distill.evaluate import DEFAULT_MARGIN, DEFAULT_MAX_ROWS, evaluate, spread_rows
from distill.qwen2_gguf import GGUFModel, read_gguf
from distill.kd import kd_loss
from distill.model import build_model
from distill.parallel import World, mean_over_ranks, wrap_student
from distill.teacher import Teacher, dequantized_bytes, is_quantized, load_teacher, native_resident_bytes
from distill.run_folder import (
    CHECKPOINT_FILE,
    INITIAL_STUDENT,
    LOG_FILE,
    RunFolder,
    check_output_folder,
    earlier_records,
    keep_initial_student,
    open_log,
    save_student,
    saved_config,
    saved_status,
    write_summary_files,
)
from distill.schedule import SCHEDULES, learning_rate
from distill.vocab import VocabComparison, compare_tokenizers, require_shared_prefix

#: the fraction of documents held out when ``eval_every`` is given without ``holdout``
DEFAULT_HOLDOUT = 0.1
STUDENT_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}
AMP_DTYPES = {"bf16": torch.bfloat16}
#: AdamW keeps, per parameter, the weight, its gradient and two moments, all in the parameter's dtype.
TRAINING_STATE_COPIES = 4
#: options a resumed run may change (the global batch must stay: batch * grad_accum * ranks)
RESUME_FREE_OPTIONS = ("out_dir", "steps", "checkpoint_every", "keep", "backend", "device", "progress",
                       "batch", "grad_accum", "resume", "teacher", "student", "data", "preset_pair", "log_every",
                       "force", "nproc", "student_format", "eval_every")
#: the largest step count, batch, sequence length, micro-batch count, checkpoint interval and kept checkpoints
MAX_COUNT = 2**31 - 1
#: the largest seed (the preset pair's models take seed + 1 and seed + 2, within numpy's and torch's 64 bits)
MAX_SEED = 2**62
#: the largest learning rate: one that float32, the optimizer's arithmetic, can hold (1e300 became inf
#: there); a huge one that it holds makes the loss diverge, which the run detects and reports
MAX_LR = float(torch.finfo(torch.float32).max)
#: the largest temperature: beyond it the softened logits are all but equal, nothing is learnt
MAX_TEMPERATURE = 1000.0
#: signals that end a run as interrupted, after a final checkpoint
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class DistillConfig:
    """One distillation run. ``teacher``/``student`` are GGUF paths (or set ``preset_pair``).

    ``batch`` is per rank and micro-batch; ``checkpoint_every`` None writes no
    checkpoints; ``resume`` continues the run in ``out_dir``. ``lr_schedule`` and
    ``warmup_steps`` shape the learning rate (``distill.schedule``); gradients are
    clipped to the norm ``max_grad_norm`` (None: measured, not clipped); a plain
    progress line is printed every ``log_every`` steps when no progress bar is shown
    (0: never); ``force`` loads an explicitly requested dequantized teacher that the
    memory check refuses; ``nproc`` records the run's ranks.
    """

    out_dir: Path
    teacher: Path | None = None
    student: Path | None = None
    preset_pair: str | None = None
    steps: int = 50
    batch: int = 2
    seq: int = 32
    temperature: float = 1.0
    lr: float = 1e-3
    backend: str | None = None
    device: str = "cpu"
    data: Path | None = None
    seed: int = 0
    student_dtype: str = "f32"
    progress: bool = False
    grad_accum: int = 1
    amp: str | None = None
    checkpoint_every: int | None = None
    keep: int = 3
    resume: bool = False
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    log_every: int = 10
    force: bool = False
    nproc: int | None = None
    student_format: str = DEFAULT_STUDENT_FORMAT
    eval_every: int | None = None
    holdout: float | None = None

    def held_out_fraction(self) -> float | None:
        """The fraction of the data's documents held out (None: none)."""
        return DEFAULT_HOLDOUT if self.holdout is None and self.eval_every is not None else self.holdout


@dataclass
class DistillResult:
    """What a run did: per-step losses and times, its decisions, and where its files are."""

    out_dir: Path
    status: str
    losses: list[float]
    step_times: list[float]
    decision: BackendDecision
    alignment: VocabComparison
    checkpoint: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM, SIGHUP); the exit code is 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


# --- preset pairs --------------------------------------------------------------------------------

#: name -> (model preset, teacher quantization, extra teacher rows, student quantization)
PRESET_PAIRS: dict[str, tuple[str, str, int, str]] = {
    # Like Qwen2.5-Coder 7B -> 0.5B in miniature: a Q4_K_M teacher with 128 more (padding) rows.
    "tiny": ("tiny", "q4_k_m", 128, "f32"),
}


def build_preset_pair(name: str, out_dir: Path, seed: int) -> tuple[Path, Path]:
    """Write the teacher and student GGUF files of preset pair ``name`` into ``out_dir``."""
    from distill.synth import PRESETS, make_model_file

    if name not in PRESET_PAIRS:
        raise DistillError(f"unknown preset pair {name!r}; known: {', '.join(PRESET_PAIRS)}")
    preset, teacher_quant, extra_rows, student_quant = PRESET_PAIRS[name]
    rows = PRESETS[preset].vocab_size
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = make_model_file(out_dir / "teacher.gguf", preset, teacher_quant, None, seed + 1, vocab_rows=rows + extra_rows)
    student = make_model_file(out_dir / "student.gguf", preset, student_quant, None, seed + 2, vocab_rows=rows)
    return Path(teacher), Path(student)


# --- start-up ------------------------------------------------------------------------------------


def check_config(config: DistillConfig) -> torch.device:
    """Validate the numbers, the device and the output folder; return the device."""
    for name in ("steps", "batch", "seq", "grad_accum", "keep"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
            raise DistillError(f"{name} must be an integer from 1 to {MAX_COUNT}, got {value!r}")
    every = config.checkpoint_every
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= MAX_COUNT):
        raise DistillError(f"checkpoint_every must be an integer from 1 to {MAX_COUNT}, got {every!r}")
    seed = config.seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise DistillError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    every = config.eval_every
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= MAX_COUNT):
        raise DistillError(f"eval_every must be an integer from 1 to {MAX_COUNT}, got {every!r}")
    holdout = config.holdout
    if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, (int, float))
                                or not 0 < holdout < 1):
        raise DistillError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
    if config.held_out_fraction() is not None and config.data is None:
        raise DistillError("eval_every and holdout need a data file: the held-out rows are documents of it")
    if config.amp is not None and config.amp not in AMP_DTYPES:
        raise DistillError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {config.amp!r}")
    for name in ("warmup_steps", "log_every"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
            raise DistillError(f"{name} must be an integer from 0 to {MAX_COUNT}, got {value!r}")
    if config.lr_schedule not in SCHEDULES:
        raise DistillError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {config.lr_schedule!r}")
    norm = config.max_grad_norm
    if norm is not None and not (isinstance(norm, (int, float)) and not isinstance(norm, bool)
                                 and math.isfinite(norm) and norm > 0):
        raise DistillError(f"max_grad_norm must be a finite number > 0, got {norm!r}")
    for name, limit in (("temperature", MAX_TEMPERATURE), ("lr", MAX_LR)):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= limit):
            raise DistillError(f"{name} must be a number > 0 and <= {limit}, got {value!r}")
    check_student_format(config.student_format)
    if config.student_dtype not in STUDENT_DTYPES:
        raise DistillError(f"student dtype must be one of {', '.join(STUDENT_DTYPES)}, got {config.student_dtype!r}")
    if (config.teacher is None) != (config.student is None) or (config.teacher is None) == (config.preset_pair is None):
        raise DistillError("give either both a teacher and a student GGUF file, or a preset pair")
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise DistillError(f"unknown device {config.device!r}; expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise DistillError(f"unsupported device {config.device!r}; expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DistillError(f"device {config.device!r} requested, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DistillError(f"device {config.device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    check_output_folder(Path(config.out_dir), config.resume)
    return device


#: float32 [tokens, vocabulary] tensors one step holds at once: teacher and student logits, the gradient
STEP_LOGITS_COPIES = 3


def step_bytes(config: DistillConfig, vocab_size: int, world_size: int) -> int:
    """Bytes one step holds beyond the models: the logits of one micro-batch of ``batch`` rows, and the
    int64 ids of the step's ``batch x grad_accum x ranks`` rows, which the data stream hands over at once."""
    logits = STEP_LOGITS_COPIES * config.batch * config.seq * vocab_size * 4
    return logits + config.batch * config.grad_accum * world_size * config.seq * 8


def _check_step_memory(config: DistillConfig, vocab_size: int, device: torch.device, world_size: int) -> None:
    """Refuse, before anything is loaded, a step whose logits and ids alone cannot fit in the free memory."""
    needed = step_bytes(config, vocab_size, world_size)
    free = _free_bytes(device)
    if needed > free:
        raise DistillError(
            f"batch {config.batch} x grad-accum {config.grad_accum} x seq {config.seq} needs {needed} bytes "
            f"({needed / 2**30:.2f} GiB) of logits and token ids per step ({STEP_LOGITS_COPIES} float32 "
            f"[batch x seq, {vocab_size}] tensors per micro-batch, int64 ids of every row of the step), but {free} "
            f"bytes ({free / 2**30:.2f} GiB) are free; lower --batch, --grad-accum or --seq")


def _free_bytes(device: torch.device) -> int:
    """Memory available to ``device`` (``distill.dispatch.available_bytes``)."""
    return available_bytes(device)


def _n_elements(model: GGUFModel) -> int:
    return sum(math.prod(t.shape) for t in model.tensors.values())


def _decide_backend(
    config: DistillConfig, device: torch.device, teacher: GGUFModel, student: GGUFModel, teacher_dtype: torch.dtype
) -> tuple[BackendDecision, dict[str, Any]]:
    override = config.backend if config.backend is not None else backend_override_from_env()
    student_itemsize = torch.empty((), dtype=STUDENT_DTYPES[config.student_dtype]).element_size()
    student_state = _n_elements(student) * student_itemsize * TRAINING_STATE_COPIES
    inputs = {
        "override": override,
        "device_class": classify_device(device),
        "teacher_quantized": is_quantized(teacher),
        "dequant_bytes": dequantized_bytes(teacher, teacher_dtype),
        "free_bytes": max(0, _free_bytes(device) - student_state),
        "native_bytes": native_resident_bytes(teacher, teacher_dtype),
    }
    decision = decide_teacher_backend(**inputs)
    room = inputs["free_bytes"] - DEQUANT_RESERVE_BYTES
    if override == "dequant" and not config.force and inputs["dequant_bytes"] > room:
        needed = inputs["dequant_bytes"]
        raise InsufficientMemoryError(
            f"backend dequant: the dequantized teacher needs {needed} bytes ({needed / 2**30:.2f} GiB) plus a reserve "
            f"of {DEQUANT_RESERVE_BYTES} bytes, but {inputs['free_bytes']} bytes ({inputs['free_bytes'] / 2**30:.2f} "
            "GiB) are free after the student's training state; nothing was loaded (use --backend auto, or give "
            "--force to load it anyway)")
    return decision, inputs


def _compare(teacher: GGUFModel, student: GGUFModel) -> VocabComparison:
    """Compare the token rows of both files; refuse a pair that is not a shared prefix."""
    for model in (teacher, student):
        if model.tokenizer is None:
            raise VocabAlignmentError(
                f"{model.path} has no tokenizer.ggml.tokens: the vocabulary alignment cannot be checked"
            )
    comparison = compare_tokenizers(
        teacher.tokenizer,
        student.tokenizer,
        teacher_rows=teacher.config.vocab_size,
        student_rows=student.config.vocab_size,
    )
    require_shared_prefix(comparison)
    return comparison


def alignment_line(comparison: VocabComparison) -> str:
    """One line saying how the vocabularies are aligned."""
    c = comparison
    action = f"teacher logits cut to {c.student_len}" if c.truncated_rows else "no truncation"
    return (
        f"vocabulary: teacher {c.teacher_len} rows, student {c.student_len} rows, "
        f"student tokens are a prefix of the teacher's: {action}"
    )


def _load_student(model: GGUFModel, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    student = build_model(model.config, model.tensors, dtype=dtype, device=device, keep_quantized=False)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student.train()


class _Memory:
    """Per-step memory: the CUDA allocator's peak on a GPU, the resident set size on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_peak_allocated_bytes" if device.type == "cuda" else "rss_bytes"

    def start_step(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- resume --------------------------------------------------------------------------------------


def resume_config(out_dir: Path, changes: dict[str, Any]) -> DistillConfig:
    """The configuration that continues the run in ``out_dir``: its saved one, with ``changes`` applied.

    Whether the changes are allowed is decided when the run starts (``run_distillation``).
    """
    out_dir = Path(out_dir)
    if not (out_dir / LOG_FILE).is_file():
        raise DistillError(f"{out_dir} holds no run to resume (no {LOG_FILE})")
    saved = saved_config(out_dir)
    known = {f.name for f in fields(DistillConfig)}
    values = {key: value for key, value in saved.items() if key in known}
    for key in ("teacher", "student", "data"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return DistillConfig(**{**values, **changes, "out_dir": out_dir, "resume": True})


def data_fingerprint(path: Path, corpus: Corpus) -> str:
    """What makes two runs read the same data: every byte of the file when the data is one file (a text or
    token file), else every id the corpus yields (a folder, the standard library)."""
    return file_fingerprint(path, "the data") if path.is_file() else corpus.fingerprint()


def _identity(config: DistillConfig, world: World, teacher: Path, student: Path,
              comparison: VocabComparison, corpus: Corpus | None) -> dict[str, Any]:
    """What makes two runs the same run: the files by fingerprint, the vocabulary decision, the fixed options."""
    return {
        "teacher": file_fingerprint(teacher, "the teacher"),
        "student": file_fingerprint(student, "the student"),
        "data": None if corpus is None else data_fingerprint(Path(config.data), corpus),
        "vocabulary": comparison.to_json(),
        "contracts": CONTRACT_VERSIONS,
        **{key: value for key, value in _config_json(config).items() if key not in RESUME_FREE_OPTIONS},
        "holdout": config.held_out_fraction(),
        "global_batch": config.batch * config.grad_accum * world.size,
        **({"decay_steps": config.steps} if config.lr_schedule == "cosine" else {}),
    }


def _refuse_changes(out_dir: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    changed = differences(saved, now)
    if changed:
        raise DistillError(f"cannot resume {out_dir}: the run differs from its checkpoint in "
                           + "; ".join(changed))


# --- the run -------------------------------------------------------------------------------------


def _config_json(config: DistillConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _prepare_inputs(config: DistillConfig, echo: Callable[[str], None], world: World) -> tuple[Path, Path]:
    """The teacher and student paths: the configured files, or a preset pair built into the output folder."""
    if config.preset_pair is None:
        return Path(config.teacher), Path(config.student)
    out_dir = Path(config.out_dir)
    if config.resume:
        return out_dir / "teacher.gguf", out_dir / "student.gguf"
    if world.writes:
        echo(f"building preset pair {config.preset_pair!r} in {config.out_dir}")
        build_preset_pair(config.preset_pair, out_dir, config.seed)
    world.barrier()
    return out_dir / "teacher.gguf", out_dir / "student.gguf"


def run_distillation(config: DistillConfig, echo: Callable[[str], None] = print) -> DistillResult:
    """Run one distillation (see the module docstring); ``echo`` receives the start-up lines (rank 0)."""
    device = check_config(config)
    world, device = World.from_env(device)
    config = replace(config, nproc=world.size)
    try:
        with RunFolder(Path(config.out_dir)) if world.writes else nullcontext():
            check_output_folder(Path(config.out_dir), config.resume)  # again, now that this run holds the folder
            return _run(config, world, device, echo if world.writes else lambda line: None)
    finally:
        world.close()


def _run(config: DistillConfig, world: World, device: torch.device, echo: Callable[[str], None]) -> DistillResult:
    out_dir = Path(config.out_dir)
    world.barrier()  # every rank has checked the configuration before rank 0 writes anything
    checkpoints = list_checkpoints(out_dir) if config.resume else []
    if config.resume and not checkpoints and saved_status(out_dir) == "completed":
        raise DistillError(f"cannot resume {out_dir}: the run completed without checkpoints, so it would start "
                           "again from step 0; give --checkpoint-every S to runs that may be continued")
    teacher_path, student_path = _prepare_inputs(config, echo, world)
    teacher_file, student_file = read_gguf(teacher_path), read_gguf(student_path)
    comparison = _compare(teacher_file, student_file)
    for name, model in (("teacher", teacher_file), ("student", student_file)):
        if config.seq > model.config.context_length:
            raise DistillError(f"seq {config.seq} exceeds the {name}'s context length {model.config.context_length}")
    _check_step_memory(config, student_file.config.vocab_size, device, world.size)
    teacher_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    decision, decision_inputs = _decide_backend(config, device, teacher_file, student_file, teacher_dtype)
    corpus = None if config.data is None else read_corpus(
        Path(config.data), student_file.tokenizer, str(student_path), student_file.config.vocab_size, config.seq)
    identity = _identity(config, world, teacher_path, student_path, comparison, corpus)
    checkpoint = load_checkpoint(checkpoints[-1]) if checkpoints else None
    if checkpoint is not None:
        try:
            _refuse_changes(out_dir, checkpoint.record["identity"], identity)
        except DistillError as err:
            ranks = checkpoint.record["config"].get("nproc")
            if isinstance(ranks, int) and ranks != world.size:
                raise DistillError(f"{err}; the run had {ranks} rank(s), this launch has {world.size}: give "
                                   f"--nproc {ranks}") from None
            raise
        if config.steps <= checkpoint.step:
            raise DistillError(f"cannot resume {out_dir}: its checkpoint is at step {checkpoint.step}; "
                               f"give --steps N with N > {checkpoint.step} to train further")
    watched = WatchedInputs({"teacher": teacher_path, "student": student_path,
                             **({} if config.data is None or str(config.data) == STDLIB_CORPUS
                                else {"data": Path(config.data)})})
    if decision.backend == "q4k-native":  # read through the run: a copy, never a mapping a truncation turns to SIGBUS
        teacher_file = read_gguf(teacher_path, in_memory=True)
    echo(format_start_line(decision))
    echo(alignment_line(comparison))
    data_line = None if corpus is None else corpus.describe()
    if data_line is not None:
        echo(data_line)
    if checkpoint is not None:
        echo(f"resuming from {checkpoint.path} (step {checkpoint.step} of {config.steps})")
    teacher = load_teacher(
        teacher_file, decision.backend, target_vocab=student_file.config.vocab_size, device=device, dtype=teacher_dtype
    )
    student = _load_student(student_file, STUDENT_DTYPES[config.student_dtype], device)
    header = {
        "record": "header",
        "distill_version": __version__,
        "teacher": str(teacher_path),
        "student": str(student_path),
        "device": str(device),
        "world_size": world.size,
        "backend": {**decision.to_json(), **decision_inputs},
        "alignment": {**comparison.to_json(), "effective_vocab": teacher.vocab_size},
        "data": data_line,
        "teacher_resident_bytes": teacher.resident_bytes(),
        "teacher_quantized_bytes": teacher.quantized_bytes,
        "config": _config_json(config),
        "identity": identity,
        "estimate": _estimate(config, teacher, student, world),
    }
    echo(_estimate_line(header["estimate"]))
    ids, held_out = _hold_out(config, None if corpus is None else corpus.ids)
    stream = TokenStream(ids, teacher.vocab_size, config.seq, config.seed)
    run = _Run(config, world, device, header, decision, comparison, checkpoint, watched, echo, held_out)
    if world.writes:
        keep_initial_student(student_path, out_dir)
    return run.train(teacher, student, stream)


def _estimate(config: DistillConfig, teacher: Teacher, student: torch.nn.Module, world: World) -> dict[str, int]:
    """A model of the peak memory of a step: the teacher, the student's training state, one step's tensors."""
    state = sum(p.numel() * p.element_size() for p in student.parameters()) * TRAINING_STATE_COPIES
    estimate = {"teacher_bytes": teacher.resident_bytes(), "student_state_bytes": state,
                "step_bytes": step_bytes(config, teacher.vocab_size, world.size)}
    return {**estimate, "peak_bytes": sum(estimate.values())}


def _estimate_line(estimate: dict[str, int]) -> str:
    gib = {key: value / 2**30 for key, value in estimate.items()}
    return (f"estimate: peak memory about {gib['peak_bytes']:.2f} GiB (teacher {gib['teacher_bytes']:.2f}, student "
            f"and AdamW {gib['student_state_bytes']:.2f}, one step {gib['step_bytes']:.2f}); the time per step is "
            "measured at the first step")


@dataclass
class HeldOut:
    """The held-out documents of a run's data file and their rows [n, seq]."""

    fraction: float
    documents: int
    indices: list[int]
    rows: torch.Tensor
    #: windows left out of training because their ids equal a held-out window's
    repeats_left_out: int = 0

    def to_json(self) -> dict[str, Any]:
        """What run.json records: enough to rebuild the split from the data file."""
        return {"fraction": self.fraction, "unit": "window", "seq": int(self.rows.shape[1]),
                "documents": self.documents, "indices": self.indices,
                "evaluated": min(len(self.indices), DEFAULT_MAX_ROWS), "repeats_left_out": self.repeats_left_out}


def _hold_out(config: DistillConfig, ids: torch.Tensor | None) -> tuple[torch.Tensor | None, HeldOut | None]:
    """The ids training reads and the held-out documents (None when the run holds none out)."""
    fraction = config.held_out_fraction()
    if ids is None or fraction is None:
        return ids, None
    rows = windows(ids, config.seq)
    held = split_documents(rows.shape[0], float(fraction), config.seed)[1]
    kept = disjoint_training(rows, held)
    return rows[kept].reshape(-1), HeldOut(float(fraction), rows.shape[0], held, rows[held],
                                           rows.shape[0] - len(held) - len(kept))


@dataclass(frozen=True)
class StepPlan:
    """How one optimizer step is split: ``grad_accum`` micro-batches of ``batch`` rows on each rank."""

    batch: int
    grad_accum: int
    world: World
    amp: torch.dtype | None = None

    @property
    def micro_weight(self) -> float:
        """The factor of each micro-batch's loss in the step's gradient."""
        return 1.0 / self.grad_accum

    @property
    def global_rows(self) -> int:
        return self.batch * self.grad_accum * self.world.size

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of one step's global rows."""
        first = shard_slice(self.world.rank, self.batch, self.grad_accum, 0)
        return rows[first.start : first.start + self.batch * self.grad_accum]


class _StopSignals:
    """While active, SIGINT, SIGTERM and SIGHUP raise RunInterrupted (in the main thread).

    ``hold()`` defers them (from the optimizer's update until the step is recorded, and while
    the run writes its final files); ``release()`` raises a signal received meanwhile.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._held = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        if not self._held:
            raise RunInterrupted(signum)

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        if self.received is not None:
            raise RunInterrupted(self.received)

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class _Run:
    """The training loop of one run and the files rank 0 keeps of it."""

    def __init__(self, config: DistillConfig, world: World, device: torch.device, header: dict[str, Any],
                 decision: BackendDecision, comparison: VocabComparison, checkpoint: Any,
                 watched: WatchedInputs, echo: Callable[[str], None], held_out: HeldOut | None = None) -> None:
        self.config, self.world, self.device, self.header = config, world, device, header
        self.watched, self.echo, self.held_out = watched, echo, held_out
        self.decision, self.comparison, self.resumed = decision, comparison, checkpoint
        self.out_dir = Path(config.out_dir)
        self.losses: list[float] = []
        self.step_times: list[float] = []
        self.last_checkpoint: Path | None = None
        self.checkpointed_step: int | None = None
        self.start = 0 if checkpoint is None else checkpoint.step
        self._before = self._earlier() if world.writes else []
        #: step -> the log record of the evaluation after that many steps
        self.evals = {r["step"]: r for r in self._before if r["record"] == "eval"}

    def train(self, teacher: Teacher, student: torch.nn.Module, stream: TokenStream) -> DistillResult:
        config, world = self.config, self.world
        optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
        if self.resumed is not None:
            self._restore(student, optimizer, stream)
        model = wrap_student(student, world, self.device)
        plan = StepPlan(config.batch, config.grad_accum, world, AMP_DTYPES.get(config.amp))
        memory = _Memory(self.device)
        status, error, final = "failed", None, None
        bar = _progress(config, self.start) if world.writes else None
        lines = _ProgressLines(config.log_every, config.steps, self.echo) if bar is None else None
        with _StopSignals() as signals:
            clip = _ClipGradients(list(student.parameters()), config.max_grad_norm, signals)
            optimizer.register_step_pre_hook(clip)
            resume_point = stream.state_dict()
            try:
                log = self._open_log()
                try:
                    self._write_summary("running", None, None)
                    self._evaluate(self.start, teacher, student, log)
                    for step in range(self.start, config.steps):
                        resume_point = stream.state_dict()  # where a stop before this step's update resumes
                        lr = learning_rate(step, config.lr, config.lr_schedule, config.warmup_steps, config.steps)
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                        memory.start_step()
                        begin = time.perf_counter()
                        rows = plan.shard(stream.take(plan.global_rows)).to(self.device)
                        loss = _step(model, teacher, optimizer, rows, config.temperature, step, plan)
                        _sync(self.device)
                        elapsed = time.perf_counter() - begin
                        self.losses.append(loss)
                        self.step_times.append(elapsed)
                        if log is not None:
                            _log(log, {"record": "step", "step": step, "loss": loss, "lr": lr,
                                       "grad_norm": clip.norm, "step_time_s": elapsed,
                                       "tokens": plan.global_rows * config.seq, memory.kind: memory.read()})
                        resume_point = stream.state_dict()
                        if config.eval_every and (step + 1) % config.eval_every == 0:
                            self._evaluate(step + 1, teacher, student, log)
                        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                            self._checkpoint(step + 1, student, optimizer, stream, log)
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{loss:.4f}", step_s=f"{elapsed:.3f}")
                        elif lines is not None:
                            lines.step(step, loss, lr, clip.norm, elapsed)
                        signals.release()
                    self._evaluate(self.start + len(self.losses), teacher, student, log)
                finally:
                    if log is not None:
                        log.close()
                done = self.start + len(self.losses)
                if config.checkpoint_every and self.checkpointed_step != done:
                    self._checkpoint(done, student, optimizer, stream)
                self.watched.check()
                if world.writes:
                    save_student(student, self.out_dir / CHECKPOINT_FILE)
                    export_student(student, self.out_dir, Path(self.header["student"]), config.student_format)
                    final = self.out_dir / CHECKPOINT_FILE
                status = "completed"
            except KeyboardInterrupt as err:
                status = "interrupted"
                error = str(err) if isinstance(err, RunInterrupted) else "interrupted by the user (Ctrl-C)"
                signals.hold()
                error += self._final_checkpoint(student, optimizer, stream, resume_point)
                raise
            except Exception as err:  # recorded in run.json, then re-raised
                if signals.received is not None:  # another rank stopped first: a collective failed
                    status = "interrupted"
                error = f"{type(err).__name__}: {err}"
                raise
            finally:
                signals.hold()
                if bar is not None:
                    bar.close()
                summary = self._write_summary(status, error, final)
        return DistillResult(self.out_dir, status, self.all_losses(), self.all_times(), self.decision,
                             self.comparison, final, summary)

    def _final_checkpoint(self, student: torch.nn.Module, optimizer: torch.optim.Optimizer, stream: TokenStream,
                          resume_point: dict[str, Any]) -> str:
        """A checkpoint of the steps done, written when a signal stops the run; what to add to its error."""
        done = self.start + len(self.losses)
        if done == 0 or self.checkpointed_step == done:
            return ""
        try:
            stream.load_state_dict(resume_point)
            self._checkpoint(done, student, optimizer, stream)
        except (DistillError, OSError) as err:
            return f"; no final checkpoint: {err}"
        return f"; final checkpoint at step {done}"

    # -- resume ------------------------------------------------------------------------------------

    def _restore(self, student: torch.nn.Module, optimizer: torch.optim.Optimizer, stream: TokenStream) -> None:
        checkpoint = self.resumed
        _check_student_state(checkpoint.path / "student.safetensors", student, checkpoint.student)
        _check_optimizer_state(checkpoint.path / "training_state.pt", student, checkpoint.optimizer)
        with torch.no_grad():
            student.load_state_dict({k: v.to(self.device) for k, v in checkpoint.student.items()})
        where = checkpoint.path / "training_state.pt"
        for name, restore in (("optimizer", lambda: optimizer.load_state_dict(checkpoint.optimizer)),
                              ("data", lambda: stream.load_state_dict(checkpoint.data)),
                              ("rng", lambda: set_rng_states(checkpoint.rng, self.device))):
            try:
                restore()
            except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
                raise DistillError(f"{where}: field {name!r} cannot be restored: {err}") from None
        self.last_checkpoint, self.checkpointed_step = checkpoint.path, checkpoint.step

    def _earlier(self) -> list[dict[str, Any]]:
        """The step records of the run before its resume point (from the log)."""
        if self.resumed is None:
            return []
        return earlier_records(self.out_dir, self.start)

    def all_losses(self) -> list[float]:
        return [r["loss"] for r in self._before if r["record"] == "step"] + self.losses

    def all_times(self) -> list[float]:
        return [r["step_time_s"] for r in self._before if r["record"] == "step"] + self.step_times

    # -- evaluation ----------------------------------------------------------------------------------

    def _evaluate(self, step: int, teacher: Teacher, student: torch.nn.Module, log) -> None:
        """Evaluate the student on the held-out rows after ``step`` steps, once (rank 0, with eval_every)."""
        if self.held_out is None or not self.config.eval_every or not self.world.writes or step in self.evals:
            return
        metrics = evaluate(teacher, student, spread_rows(self.held_out.rows, DEFAULT_MAX_ROWS),
                           self.config.temperature)
        self.evals[step] = metrics.log_record(step)
        if log is not None:
            _log(log, self.evals[step])

    def _eval_summary(self) -> dict[str, Any] | None:
        """The first and last evaluations and whether the student improved over its start (run.json)."""
        if not self.evals:
            return None
        first, last = self.evals[min(self.evals)], self.evals[max(self.evals)]
        target = first["kd_loss"] * (1.0 - DEFAULT_MARGIN)
        return {"every": self.config.eval_every, "start": first, "final": last, "margin": DEFAULT_MARGIN,
                "improved": last["step"] > first["step"] and math.isfinite(last["kd_loss"])
                and last["kd_loss"] <= target}

    # -- files ---------------------------------------------------------------------------------------

    def _open_log(self):
        """The log, opened for appending: rank 0 only (None elsewhere); a resume rewrites its past first."""
        if not self.world.writes:
            return None
        resumed = None if self.resumed is None else {
            "record": "resume", "step": self.start, "checkpoint": str(self.resumed.path.name), "header": self.header}
        return open_log(self.out_dir, self.header, resumed, self._before)

    def _checkpoint(self, step: int, student: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    stream: TokenStream, log=None) -> None:
        """Write checkpoint ``step`` (rank 0), run.json and the curves; log its cost when ``log`` is given."""
        self.watched.check()
        self.checkpointed_step = step
        if self.world.writes:
            begin = time.perf_counter()
            record = {"step": step, "data_position": stream.position, "config": self.header["config"],
                      "identity": self.header["identity"], "distill_version": __version__}
            self.last_checkpoint = save_checkpoint(self.out_dir, record, student, optimizer.state_dict(),
                                                   rng_states(self.device), stream.state_dict(), self.config.keep)
            self._write_summary("running", None, None)
            if log is not None:
                size = sum(p.stat().st_size for p in self.last_checkpoint.iterdir())
                _log(log, {"record": "checkpoint", "step": step, "seconds": time.perf_counter() - begin,
                           "bytes": size})
        else:
            self.last_checkpoint = self.out_dir / CHECKPOINT_DIR / f"step-{step:08d}"

    def _write_summary(self, status: str, error: str | None, final: Path | None) -> dict[str, Any]:
        losses, times = self.all_losses(), self.all_times()
        summary = {
            "status": status,
            "steps_requested": self.config.steps,
            "steps_completed": len(losses),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "mean_step_time_s": sum(times) / len(times) if times else None,
            "world_size": self.world.size,
            "grad_accum": self.config.grad_accum,
            "backend": self.decision.to_json(),
            "alignment": self.comparison.to_json(),
            "checkpoint": CHECKPOINT_FILE if final else None,
            "last_checkpoint": None if self.last_checkpoint is None else
            f"{CHECKPOINT_DIR}/{self.last_checkpoint.name}",
            "resumed_from_step": None if self.resumed is None else self.start,
            "log": LOG_FILE,
            "error": error,
            "initial_student": INITIAL_STUDENT,
            "held_out": None if self.held_out is None else self.held_out.to_json(),
            "eval": self._eval_summary(),
        }
        if self.world.writes and self.out_dir.is_dir():
            write_summary_files(self.out_dir, summary)
        return summary


def _check_student_state(where: Path, student: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """The saved student has exactly the student's tensors, with their shapes and dtypes."""
    expected = student.state_dict()
    for name in sorted(set(expected) ^ set(saved)):
        state = "missing" if name in expected else "not a tensor of the student"
        raise DistillError(f"{where}: tensor {name!r} is {state}")
    for name, tensor in expected.items():
        got = saved[name]
        if got.shape != tensor.shape or got.dtype != tensor.dtype:
            raise DistillError(f"{where}: tensor {name!r} is {got.dtype} {tuple(got.shape)}, expected "
                               f"{tensor.dtype} {tuple(tensor.shape)}")


def _check_optimizer_state(where: Path, student: torch.nn.Module, saved: dict[str, Any]) -> None:
    """The saved AdamW state has one group of the student's parameters and moments of their shapes."""
    parameters = list(student.parameters())
    groups = saved["param_groups"]
    if len(groups) != 1 or not isinstance(groups[0], dict) or groups[0].get("params") != list(range(len(parameters))):
        raise DistillError(f"{where}: field 'optimizer.param_groups' does not list the student's "
                           f"{len(parameters)} parameters")
    for index, state in saved["state"].items():
        if not (isinstance(index, int) and 0 <= index < len(parameters)) or not isinstance(state, dict):
            raise DistillError(f"{where}: field 'optimizer.state' has an entry {index!r:.40} for no parameter")
        for key in ("exp_avg", "exp_avg_sq"):
            moment = state.get(key)
            if not isinstance(moment, torch.Tensor) or moment.shape != parameters[index].shape \
                    or not moment.dtype.is_floating_point:
                raise DistillError(f"{where}: field 'optimizer.state.{index}.{key}' is not a float tensor of "
                                   f"shape {tuple(parameters[index].shape)}")
        if not isinstance(state.get("step"), torch.Tensor) or state["step"].numel() != 1:
            raise DistillError(f"{where}: field 'optimizer.state.{index}.step' is not a scalar tensor")


def _step(
    student: torch.nn.Module,
    teacher: Teacher,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    temperature: float,
    step: int,
    plan: StepPlan,
) -> float:
    """One optimizer step over this rank's rows; raises TrainingDiverged (before updating) on a non-finite loss.

    ``input_ids`` holds ``plan.grad_accum`` micro-batches of ``plan.batch`` rows;
    the returned loss is their mean, averaged over the ranks.
    """
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    micro_batches = input_ids.split(plan.batch)
    for k, micro in enumerate(micro_batches):
        syncs = k == len(micro_batches) - 1 or not plan.world.distributed
        with nullcontext() if syncs else student.no_sync():
            teacher_logits = teacher.logits(micro)
            with torch.autocast(micro.device.type, dtype=plan.amp or torch.bfloat16, enabled=plan.amp is not None):
                student_logits = student(micro)
            loss = kd_loss(student_logits, teacher_logits, temperature)
            value = float(mean_over_ranks(loss.detach(), plan.world))
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the KD loss became {value} at step {step}; training stopped before the optimizer step "
                    "(lower --lr, check the data, or the models' weights)"
                )
            (loss * plan.micro_weight).backward()
        total += value
    optimizer.step()
    return total / len(micro_batches)


def train_step(student: torch.nn.Module, teacher: Teacher, optimizer: torch.optim.Optimizer, input_ids: torch.Tensor,
               temperature: float, step: int) -> float:
    """One single-rank optimizer step over one batch, through the loop's own ``_step``."""
    return _step(student, teacher, optimizer, input_ids, temperature, step, StepPlan(input_ids.shape[0], 1, World()))


def _log(log, record: dict[str, Any]) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


class _ClipGradients:
    """An optimizer pre-step hook: holds the stop signals from here until the step is recorded, then
    clips the gradients to ``max_norm`` (None: only measures them) and keeps their norm in ``norm``."""

    def __init__(self, parameters: list[torch.nn.Parameter], max_norm: float | None, signals: _StopSignals) -> None:
        self.parameters, self.max_norm, self.signals = parameters, max_norm, signals
        self.norm: float | None = None

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.signals.hold()
        limit = float("inf") if self.max_norm is None else self.max_norm
        self.norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, limit))


class _ProgressLines:
    """A plain progress line every ``every`` steps and at the last step, for logs that are not a terminal."""

    def __init__(self, every: int, total: int, echo: Callable[[str], None]) -> None:
        self.every, self.total, self.echo = every, total, echo
        self.first = True
        self.times: list[float] = []

    def step(self, step: int, loss: float, lr: float, grad_norm: float | None, elapsed: float) -> None:
        self.times.append(elapsed)
        left = self.total - step - 1
        if self.first:
            self.first = False
            self.echo(f"first step: {elapsed:.3f} s; about {elapsed * left:.1f} s for the {left} steps left")
        if not self.every or ((step + 1) % self.every and left):
            return
        recent = self.times[-self.every:]
        per_step = sum(recent) / len(recent)
        norm = "-" if grad_norm is None else f"{grad_norm:.3g}"
        self.echo(f"step {step + 1}/{self.total}: loss {loss:.4f}, lr {lr:.3g}, grad-norm {norm}, "
                  f"{per_step:.3f} s/step, about {per_step * left:.0f} s left")


def _progress(config: DistillConfig, start: int):
    if not config.progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=config.steps, initial=start, desc="distill", unit="step", dynamic_ncols=True)

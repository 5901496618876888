"""The distillation loop: a frozen GGUF teacher, a trainable GGUF student, the KD loss, AdamW.

Start-up, in this order, before anything is written (bad input leaves no files):
read both GGUF files; compare their vocabularies and refuse a pair whose
student rows are not a prefix of the teacher's (``distill.vocab``); choose the
teacher backend (flag, else ``DISTILL_TEACHER_BACKEND``, else auto; see
``distill.dispatch``) and print it as one line; load the teacher with its
logits cut to the student's rows; load the student (quantized student weights
are expanded; parameters in f32 or bf16, all trainable); read the data.

Data: ``data`` is a file of token ids: ``.npy`` (an integer array of any shape,
read flat) or text (whitespace-separated integers). Each batch takes ``batch``
windows of ``seq`` consecutive ids at random offsets. Without a file, batches
are uniformly random ids. Both draw from a generator seeded with ``seed``.

Output folder (``out_dir``):
- ``train_log.jsonl``: a header record (backend decision, vocabulary
  alignment, configuration), then one record per step (loss, step time,
  memory: the CUDA allocator's peak on a GPU, the process's resident set on
  CPU), written and flushed as they happen;
- ``student.safetensors``: the trained student (its parameters by their
  ``distill.model.Qwen2`` names), written only when every step completed,
  through a temporary file and a rename (never half-written);
- ``run.json``: the summary (status ``completed``, ``interrupted`` or
  ``failed``, steps done, final loss, error), written atomically at the end
  whatever happened.

A NaN or Inf loss stops the run (TrainingDiverged) before the optimizer step.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill import __version__
from distill.dispatch import (
    BackendDecision,
    available_bytes,
    backend_override_from_env,
    classify_device,
    decide_teacher_backend,
    format_start_line,
)
from distill.errors import DistillError, TrainingDiverged, VocabAlignmentError
from distill.gguf_io import GGUFModel, read_gguf
from distill.kd import kd_loss
from distill.model import build_model
from distill.teacher import Teacher, dequantized_bytes, is_quantized, load_teacher, native_resident_bytes
from distill.vocab import VocabComparison, compare_tokenizers, require_shared_prefix

LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "student.safetensors"
SUMMARY_FILE = "run.json"
OUTPUT_FILES = (LOG_FILE, CHECKPOINT_FILE, SUMMARY_FILE)
STUDENT_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}
#: AdamW keeps, per parameter, the weight, its gradient and two moments, all in the parameter's dtype.
TRAINING_STATE_COPIES = 4


@dataclass
class DistillConfig:
    """One distillation run. ``teacher``/``student`` are GGUF paths (or set ``preset_pair``)."""

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


def _check_config(config: DistillConfig) -> torch.device:
    """Validate the numbers and the device; return the device."""
    for name in ("steps", "batch", "seq"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise DistillError(f"{name} must be an integer >= 1, got {value!r}")
    for name in ("temperature", "lr"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise DistillError(f"{name} must be a finite number > 0, got {value!r}")
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
    out_dir = Path(config.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DistillError(f"output folder {out_dir} exists and is not a folder")
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing:
        raise DistillError(f"{out_dir} already holds a run ({', '.join(existing)}); choose another output folder")
    return device


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
    return decide_teacher_backend(**inputs), inputs


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


# --- data ----------------------------------------------------------------------------------------


def read_token_file(path: Path, vocab_size: int, seq: int) -> torch.Tensor:
    """The ids of a ``.npy`` or whitespace-separated text file as a flat int64 tensor, checked."""
    import numpy as np

    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if not np.issubdtype(array.dtype, np.integer):
                raise DistillError(f"{path}: token ids must be integers, got dtype {array.dtype}")
            ids = torch.from_numpy(array.astype(np.int64).reshape(-1))
        else:
            words = path.read_text(encoding="utf-8").split()
            ids = torch.tensor([int(word) for word in words], dtype=torch.int64)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read token ids: {err}") from None
    if ids.numel() < seq:
        raise DistillError(f"{path}: {ids.numel()} token ids, fewer than one sequence of {seq}")
    bad = ((ids < 0) | (ids >= vocab_size)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise DistillError(f"{path}: token id {int(ids[i])} at position {i} is outside the vocabulary [0, {vocab_size})")
    return ids


def token_batches(ids: torch.Tensor | None, vocab_size: int, batch: int, seq: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless [batch, seq] int64 batches: windows of ``ids`` at random offsets, or random ids."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        if ids is None:
            yield torch.randint(0, vocab_size, (batch, seq), generator=generator)
        else:
            starts = torch.randint(0, ids.numel() - seq + 1, (batch,), generator=generator)
            yield torch.stack([ids[s : s + seq] for s in starts.tolist()])


# --- output --------------------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary name is unique (process id and a random part); the final file
    gets the usual permissions (0666 less the umask), whatever ``write`` used.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def _save_student(student: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    _write_atomic(path, lambda tmp: save_model(student, str(tmp)))


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


# --- the run -------------------------------------------------------------------------------------


def _prepare_inputs(config: DistillConfig, echo: Callable[[str], None]) -> tuple[Path, Path]:
    """The teacher and student paths: the configured files, or a preset pair built into the output folder."""
    if config.preset_pair is None:
        return Path(config.teacher), Path(config.student)
    echo(f"building preset pair {config.preset_pair!r} in {config.out_dir}")
    return build_preset_pair(config.preset_pair, Path(config.out_dir), config.seed)


def run_distillation(config: DistillConfig, echo: Callable[[str], None] = print) -> DistillResult:
    """Run one distillation (see the module docstring); ``echo`` receives the start-up lines."""
    device = _check_config(config)
    teacher_path, student_path = _prepare_inputs(config, echo)
    teacher_file, student_file = read_gguf(teacher_path), read_gguf(student_path)
    comparison = _compare(teacher_file, student_file)
    for name, model in (("teacher", teacher_file), ("student", student_file)):
        if config.seq > model.config.context_length:
            raise DistillError(f"seq {config.seq} exceeds the {name}'s context length {model.config.context_length}")
    teacher_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    decision, decision_inputs = _decide_backend(config, device, teacher_file, student_file, teacher_dtype)
    echo(format_start_line(decision))
    echo(alignment_line(comparison))
    teacher = load_teacher(
        teacher_file, decision.backend, target_vocab=student_file.config.vocab_size, device=device, dtype=teacher_dtype
    )
    student = _load_student(student_file, STUDENT_DTYPES[config.student_dtype], device)
    ids = None if config.data is None else read_token_file(Path(config.data), teacher.vocab_size, config.seq)
    header = {
        "record": "header",
        "distill_version": __version__,
        "teacher": str(teacher_path),
        "student": str(student_path),
        "device": str(device),
        "backend": {**decision.to_json(), **decision_inputs},
        "alignment": {**comparison.to_json(), "effective_vocab": teacher.vocab_size},
        "teacher_resident_bytes": teacher.resident_bytes(),
        "teacher_quantized_bytes": teacher.quantized_bytes,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
    }
    return _train(config, device, teacher, student, ids, header, decision, comparison)


def _train(
    config: DistillConfig,
    device: torch.device,
    teacher: Teacher,
    student: torch.nn.Module,
    ids: torch.Tensor | None,
    header: dict[str, Any],
    decision: BackendDecision,
    comparison: VocabComparison,
) -> DistillResult:
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    batches = token_batches(ids, teacher.vocab_size, config.batch, config.seq, config.seed)
    memory = _Memory(device)
    losses: list[float] = []
    step_times: list[float] = []
    status, error, checkpoint = "failed", None, None
    bar = _progress(config)
    try:
        with open(out_dir / LOG_FILE, "w", encoding="utf-8") as log:
            _log(log, header)
            for step in range(config.steps):
                memory.start_step()
                start = time.perf_counter()
                loss = _step(student, teacher, optimizer, next(batches).to(device), config.temperature, step)
                _sync(device)
                elapsed = time.perf_counter() - start
                losses.append(loss)
                step_times.append(elapsed)
                _log(log, {"record": "step", "step": step, "loss": loss, "step_time_s": elapsed,
                           "tokens": config.batch * config.seq, memory.kind: memory.read()})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", step_s=f"{elapsed:.3f}")
        _save_student(student, out_dir / CHECKPOINT_FILE)
        checkpoint = out_dir / CHECKPOINT_FILE
        status = "completed"
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user (Ctrl-C)"
        raise
    except Exception as err:  # recorded in run.json, then re-raised
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        if bar is not None:
            bar.close()
        summary = {
            "status": status,
            "steps_requested": config.steps,
            "steps_completed": len(losses),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "mean_step_time_s": sum(step_times) / len(step_times) if step_times else None,
            "backend": decision.to_json(),
            "alignment": comparison.to_json(),
            "checkpoint": CHECKPOINT_FILE if checkpoint else None,
            "log": LOG_FILE,
            "error": error,
        }
        _write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return DistillResult(out_dir, status, losses, step_times, decision, comparison, checkpoint, summary)


def _step(
    student: torch.nn.Module,
    teacher: Teacher,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    temperature: float,
    step: int,
) -> float:
    """One KD step; raises TrainingDiverged (before updating) when the loss is not finite."""
    teacher_logits = teacher.logits(input_ids)
    student_logits = student(input_ids)
    loss = kd_loss(student_logits, teacher_logits, temperature)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the KD loss became {value} at step {step}; training stopped before the optimizer step "
            "(lower --lr, check the data, or the models' weights)"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


def _log(log, record: dict[str, Any]) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def _progress(config: DistillConfig):
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=config.steps, desc="distill", unit="step", dynamic_ncols=True)

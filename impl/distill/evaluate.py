"""Evaluation of a student against its teacher on held-out rows, and the verdict against a baseline.

Metrics (``evaluate``), over rows of token ids ``[n, seq]``:

- ``kd_loss``: the training loss (``distill.kd.kd_loss``: T^2 times the mean over
  positions of KL(softmax(t/T) || softmax(s/T))), with the teacher's logits cut to the
  student's rows as in training; ``positions`` = n * seq;
- ``ce``: the student's next-token cross-entropy (nats; perplexity = exp(ce)) at
  temperature 1, over the ``ce_positions`` = n * (seq - 1) positions that have a next token;
- ``top1_agreement``: the fraction of the ``positions`` where the student's and the
  teacher's highest logit is the same token;
- ``uniform_kd_loss``: for reference, the KD loss of a student that predicts the uniform
  distribution (all logits equal), which depends on the teacher only. A teacher with
  random weights is nearly uniform, so there even an all-zero student comes close to a
  trained one: the weight checks, not the metrics, refuse it.

A position whose student logits hold NaN or Inf is never dropped: it makes the metrics
NaN and is counted in ``nonfinite_positions``.

Verdict (``judge``): a student passes only when its KD loss on the held-out rows is at
most ``(1 - margin)`` times its baseline's (the student the run started from), both
measured on the same rows, and no position is non-finite. ``evaluate_students`` adds the
refusals of the checkpoint itself (``distill.students``: unreadable, shapes, NaN/Inf or
constant weights), a vocabulary that is not the baseline's, weights identical to the
baseline's (a no-op run) and held-out rows that equal rows the run trained on. There is
no structural fallback: without metrics that beat the baseline there is no pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from distill.dispatch import available_bytes, classify_device, decide_teacher_backend
from distill.errors import CheckpointRejected, DistillError, VocabAlignmentError
from distill.kd import kd_loss
from distill.qwen2_gguf import read_gguf
from distill.students import HF_CONFIG_FILE, Student, load_student, same_weights, weight_problems
from distill.teacher import Teacher, dequantized_bytes, is_quantized, load_teacher, native_resident_bytes
from distill.vocab import compare_tokenizers, require_shared_prefix

#: What a contract may bind here (the functions and defaults distill-eval-v1 names); see pv's binding rule.
__pv_bindable__ = ("evaluate", "judge", "DEFAULT_MARGIN", "DEFAULT_BATCH", "DEFAULT_MAX_ROWS", "MAX_LISTED")
#: the least relative reduction of the held-out KD loss below the baseline's that passes
DEFAULT_MARGIN = 0.05
#: rows evaluated per forward
DEFAULT_BATCH = 4
#: held-out rows evaluated at most, spread evenly over them (each costs a teacher and two student forwards)
DEFAULT_MAX_ROWS = 256
#: weight problems of a checkpoint listed one by one; the rest are counted
MAX_LISTED = 5


@dataclass(frozen=True)
class EvalMetrics:
    """Held-out metrics of one student (see the module docstring)."""

    kd_loss: float
    ce: float
    top1_agreement: float
    positions: int
    ce_positions: int
    nonfinite_positions: int = 0
    uniform_kd_loss: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "perplexity": perplexity(self.ce)}

    def log_record(self, step: int) -> dict[str, Any]:
        """The ``train_log.jsonl`` record of an evaluation after ``step`` optimizer steps."""
        return {"record": "eval", "step": step, "kd_loss": self.kd_loss, "ce": self.ce,
                "top1_agreement": self.top1_agreement, "positions": self.positions}


def perplexity(ce: float) -> float:
    """exp(ce): the perplexity of a mean next-token cross-entropy in nats (inf past float's range, NaN for NaN)."""
    try:
        return math.exp(ce)
    except OverflowError:
        return math.inf


def spread_rows(rows: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` (>= 1) of ``rows`` [n, seq], spread evenly from the first (all of them when n <= limit)."""
    count = rows.shape[0]
    if count <= limit:
        return rows
    return rows[[index * count // limit for index in range(limit)]]


def batches(rows: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """``rows`` [n, seq] in consecutive batches of at most ``batch`` rows."""
    yield from rows.split(batch)


def batch_sums(student_logits: torch.Tensor, teacher_logits: torch.Tensor, ids: torch.Tensor,
               temperature: float) -> tuple[float, float, int, int, float]:
    """Over one batch [B, S]: the KD loss summed over positions, the next-token cross-entropy summed over
    the positions that have a next token, the positions where both argmaxes agree, the non-finite positions,
    and the KD loss of a uniform prediction summed over positions."""
    s, t = student_logits.float(), teacher_logits.to(student_logits.device).float()
    positions = ids.numel()
    nonfinite = int((~torch.isfinite(s).all(dim=-1)).sum())
    kd_sum = float(kd_loss(s, t, temperature)) * positions
    targets = ids[:, 1:].reshape(-1).to(s.device)
    ce_sum = float(F.cross_entropy(s[:, :-1].reshape(-1, s.shape[-1]), targets, reduction="sum"))
    agree = int((s.argmax(-1) == t.argmax(-1)).sum())
    uniform_sum = float(kd_loss(torch.zeros_like(t), t, temperature)) * positions
    return kd_sum, ce_sum, agree, nonfinite, uniform_sum


def evaluate(teacher: Teacher, student: torch.nn.Module, rows: torch.Tensor, temperature: float,
             batch: int = DEFAULT_BATCH) -> EvalMetrics:
    """The metrics of ``student`` against ``teacher`` over ``rows`` [n, seq] of token ids (n >= 1, seq >= 2)."""
    if rows.dim() != 2 or rows.shape[0] < 1 or rows.shape[1] < 2:
        raise DistillError(f"evaluation needs at least one row of at least 2 token ids, got shape {tuple(rows.shape)}")
    totals = [0.0, 0.0, 0, 0, 0.0]
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            device = next(student.parameters()).device
            for ids in batches(rows, batch):
                sums = batch_sums(student(ids.to(device)), teacher.logits(ids), ids, temperature)
                totals = [total + part for total, part in zip(totals, sums)]
    finally:
        student.train(was_training)
    kd_sum, ce_sum, agree, nonfinite, uniform_sum = totals
    positions = rows.numel()
    ce_positions = rows.shape[0] * (rows.shape[1] - 1)
    agreement = math.nan if nonfinite else agree / positions
    return EvalMetrics(kd_sum / positions, ce_sum / ce_positions, agreement, positions, ce_positions, int(nonfinite),
                       uniform_sum / positions)


def judge(student: EvalMetrics, baseline: EvalMetrics, margin: float) -> list[str]:
    """Why ``student`` does not beat ``baseline`` by ``margin`` (empty: it does)."""
    reasons = []
    if student.nonfinite_positions:
        reasons.append(f"the student's logits are NaN or Inf at {student.nonfinite_positions} of "
                       f"{student.positions} held-out positions")
    if student.positions != baseline.positions or student.positions < 1:
        reasons.append(f"student and baseline were measured on different positions "
                       f"({student.positions} and {baseline.positions})")
    target = baseline.kd_loss * (1.0 - margin)
    if not student.kd_loss <= target:
        reasons.append(f"no improvement: held-out KD loss {student.kd_loss:.6g}, baseline {baseline.kd_loss:.6g}; "
                       f"a pass needs at most {target:.6g} ({margin:g} below the baseline)")
    return reasons


def overlapping_rows(held_out: torch.Tensor, trained: torch.Tensor) -> int:
    """How many of the ``held_out`` rows equal a row of ``trained`` (both [n, seq])."""
    if held_out.shape[1:] != trained.shape[1:]:
        raise DistillError(f"rows of {tuple(held_out.shape[1:])} and {tuple(trained.shape[1:])} ids cannot be compared")
    seen = {tuple(row) for row in trained.tolist()}
    return sum(tuple(row) in seen for row in held_out.tolist())


@dataclass
class EvalReport:
    """The outcome of ``evaluate_students``: the verdict, its reasons, and the metrics measured."""

    reasons: list[str]
    student: EvalMetrics | None = None
    baseline: EvalMetrics | None = None
    margin: float = DEFAULT_MARGIN
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.reasons and self.student is not None

    def to_json(self) -> dict[str, Any]:
        difference = None
        if self.student is not None and self.baseline is not None:
            difference = {k: getattr(self.student, k) - getattr(self.baseline, k)
                          for k in ("kd_loss", "ce", "top1_agreement")}
        return {"verdict": "pass" if self.passed else "fail", "reasons": self.reasons, "margin": self.margin,
                "metrics": {"student": None if self.student is None else self.student.to_json(),
                            "baseline": None if self.baseline is None else self.baseline.to_json(),
                            "difference": difference}, **self.details}


def load_eval_teacher(path: Path, target_vocab: int, device: torch.device, backend: str | None) -> Teacher:
    """The teacher, cut to ``target_vocab`` rows, on the backend chosen as training chooses it."""
    model = read_gguf(path)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    decision = decide_teacher_backend(backend, classify_device(device), is_quantized(model),
                                      dequantized_bytes(model, dtype), available_bytes(device),
                                      native_resident_bytes(model, dtype))
    return load_teacher(model, decision.backend, target_vocab=target_vocab, device=device, dtype=dtype)


def _check_vocabulary(teacher_path: Path, student: Student, baseline: Student) -> None:
    """Refuse a student whose rows are not the baseline's, or a pair that training would refuse."""
    if student.config.vocab_size != baseline.config.vocab_size:
        raise CheckpointRejected(f"student {student.path} has {student.config.vocab_size} vocabulary rows, its baseline "
                                 f"{baseline.path} {baseline.config.vocab_size}")
    tokenizer = student.tokenizer or baseline.tokenizer
    if student.tokenizer is not None and baseline.tokenizer is not None and \
            student.tokenizer.tokens != baseline.tokenizer.tokens:
        raise CheckpointRejected(f"student {student.path} has other tokens than its baseline {baseline.path}")
    teacher = read_gguf(teacher_path)
    if tokenizer is None or teacher.tokenizer is None:
        raise DistillError("the vocabulary alignment cannot be checked: the teacher or the student has no "
                           "tokenizer.ggml.tokens (give the student's GGUF file as its config source)")
    comparison = compare_tokenizers(teacher.tokenizer, tokenizer, teacher_rows=teacher.config.vocab_size,
                                    student_rows=student.config.vocab_size)
    try:
        require_shared_prefix(comparison)
    except VocabAlignmentError as err:
        raise CheckpointRejected(f"student {student.path}: {err}") from None


def _config_source(student: Path, baseline: Path) -> Path | None:
    """Where a safetensors student's config comes from: a config.json beside it, else its baseline's GGUF file."""
    if (student.parent / HF_CONFIG_FILE).is_file() or baseline.suffix == ".safetensors":
        return None
    return baseline


def evaluate_students(teacher_path: Path, student_path: Path, baseline_path: Path, rows: torch.Tensor, *,
                      config_source: Path | None = None, temperature: float = 1.0, margin: float = DEFAULT_MARGIN,
                      trained_rows: torch.Tensor | None = None, device: torch.device = torch.device("cpu"),
                      backend: str | None = None, batch: int = DEFAULT_BATCH) -> EvalReport:
    """Evaluate a student and its baseline against a teacher on held-out ``rows``; judge the student.

    Input errors (a missing file, a broken teacher or baseline) raise DistillError; a
    student that cannot be evaluated is a failed report naming why.
    """
    if not (math.isfinite(margin) and 0 <= margin < 1):
        raise DistillError(f"margin must be a number in [0, 1), got {margin!r}")
    baseline = load_student(baseline_path, config_source if Path(baseline_path).suffix == ".safetensors" else None)
    broken = weight_problems(baseline.model)
    if broken:
        raise DistillError(f"baseline {baseline_path}: " + "; ".join(broken))
    report = EvalReport([], margin=margin, details={"positions_held_out": rows.numel(), "rows": rows.shape[0]})
    if trained_rows is not None:
        overlap = overlapping_rows(rows, trained_rows)
        if overlap:
            report.reasons.append(f"the evaluation data overlaps the training data: {overlap} of {rows.shape[0]} "
                                  "held-out rows are rows the student was trained on")
    try:
        student = load_student(student_path, config_source or _config_source(Path(student_path), Path(baseline_path)))
        _check_vocabulary(Path(teacher_path), student, baseline)
    except CheckpointRejected as err:
        report.reasons.append(str(err))
        return report
    problems = weight_problems(student.model)
    shown = problems[:MAX_LISTED] + ([f"and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
    report.reasons += [f"student {student.path}: {problem}" for problem in shown]
    if same_weights(student.model, baseline.model):
        report.reasons.append(f"student {student.path} has exactly the weights of its baseline {baseline.path}: "
                              "a no-op run")
    teacher = load_eval_teacher(Path(teacher_path), student.config.vocab_size, device, backend)
    report.student = evaluate(teacher, student.model.to(device), rows, temperature, batch)
    report.baseline = evaluate(teacher, baseline.model.to(device), rows, temperature, batch)
    report.reasons += judge(report.student, report.baseline, margin)
    return report

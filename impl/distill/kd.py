"""The knowledge-distillation loss: forward KL(teacher || student) at a temperature.

For student logits ``s`` and teacher logits ``t`` over the same vocabulary, with
``p = softmax(t/T)`` and ``q = softmax(s/T)``::

    L = T^2 / n * sum over valid positions of KL(p || q)
      = T^2 / n * sum_pos sum_v p_v * (log p_v - log q_v)
    dL/ds = T * (q - p) / n            (per valid position; zero elsewhere)

``n`` is the number of valid (unmasked) positions. The teacher's logits are a
constant target: no gradient flows to them.

Memory: the loss is a custom autograd function that walks the positions in
chunks. The forward keeps references to its inputs (no copies), the valid row
indices and the two float32 log-normalisers (logsumexp of s/T and of t/T) of
each valid row; the backward recomputes both softmaxes chunk by chunk from
them (one exp per element) and writes into one preallocated gradient of the
student's dtype. Besides that gradient, which any backward needs, the extra
memory is a few float32 chunk buffers: about 1/32 of the positions, at least
4 MiB and at most 64 MiB each (``max_chunk_elems`` fixes the size instead).
All arithmetic runs in float32 (the loss sum in float64), whatever the input
dtype.

Per row the forward uses KL(p || q) = sum_v p_v (t_v - s_v)/T - lse_t + lse_s
(with sum_v p_v = 1); a term with p_v = 0 counts 0, so teacher logits of -inf
(tokens it rules out) give a finite loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from distill.errors import DistillError, VocabAlignmentError

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("kd_loss",)

#: Bounds of the elements of one float32 chunk buffer (4 MiB .. 64 MiB) and the chunk count aimed at.
MIN_CHUNK_ELEMS = 1 << 20
MAX_CHUNK_ELEMS = 1 << 24
TARGET_CHUNKS = 32


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    *,
    max_chunk_elems: int | None = None,
) -> torch.Tensor:
    """Return the float32 scalar KD loss of ``student_logits`` against ``teacher_logits``.

    Both are ``[..., vocab]`` with the same shape; ``mask`` (optional) is a boolean
    tensor of the leading shape, True where a position counts. Raises
    VocabAlignmentError when the vocabularies differ (align them before: see
    ``distill.vocab``), DistillError for other bad arguments or an empty mask.
    ``max_chunk_elems`` sets the elements of one chunk buffer (default: automatic).
    """
    rows = _valid_rows(student_logits, teacher_logits, temperature, mask)
    vocab = student_logits.shape[-1]
    n = student_logits[..., 0].numel() if rows is None else rows.numel()
    chunk_rows = max(1, _chunk_elems(n, vocab, max_chunk_elems) // vocab)
    return _KDLoss.apply(student_logits, teacher_logits.detach(), float(temperature), rows, chunk_rows)


def _valid_rows(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None
) -> torch.Tensor | None:
    """Check the arguments; return the flat indices of the valid rows (None: all rows)."""
    if student.shape[-1] != teacher.shape[-1]:
        raise VocabAlignmentError(
            f"kd_loss: student vocabulary {student.shape[-1]} != teacher vocabulary "
            f"{teacher.shape[-1]}; align the vocabularies before the loss (distill.vocab)"
        )
    if student.shape != teacher.shape:
        raise DistillError(
            f"kd_loss: student logits {tuple(student.shape)} and teacher logits "
            f"{tuple(teacher.shape)} differ in their positions"
        )
    if student.dim() < 1 or student.shape[-1] < 1:
        raise DistillError(f"kd_loss: logits need a non-empty last (vocabulary) axis, got {tuple(student.shape)}")
    if not (student.is_floating_point() and teacher.is_floating_point()):
        raise DistillError(f"kd_loss: logits must be floating point, got {student.dtype} and {teacher.dtype}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise DistillError(f"kd_loss: temperature must be a finite number > 0, got {temperature!r}")
    n_rows = student[..., 0].numel()
    if mask is None:
        if n_rows == 0:
            raise DistillError("kd_loss: no positions (empty logits)")
        return None
    if tuple(mask.shape) != tuple(student.shape[:-1]):
        raise DistillError(
            f"kd_loss: mask shape {tuple(mask.shape)} must equal the logits' positions {tuple(student.shape[:-1])}"
        )
    if mask.dtype != torch.bool:
        raise DistillError(f"kd_loss: mask must be a bool tensor, got {mask.dtype}")
    rows = mask.reshape(-1).nonzero().squeeze(1).to(student.device)
    if rows.numel() == 0:
        raise DistillError("kd_loss: the mask selects no position; the mean over zero positions is undefined")
    return rows


def _chunk_elems(n_rows: int, vocab: int, requested: int | None) -> int:
    """Elements of one chunk buffer: ``requested``, or about 1/TARGET_CHUNKS of the logits within the bounds."""
    if requested is not None:
        return int(requested)
    return min(MAX_CHUNK_ELEMS, max(MIN_CHUNK_ELEMS, n_rows * vocab // TARGET_CHUNKS))


def _selectors(n_rows: int, rows: torch.Tensor | None, chunk_rows: int) -> Iterator[slice | torch.Tensor]:
    """Yield row selectors (a slice, or a tensor of row indices) for consecutive chunks of valid rows."""
    if rows is None:
        for start in range(0, n_rows, chunk_rows):
            yield slice(start, start + chunk_rows)
    else:
        for start in range(0, rows.numel(), chunk_rows):
            yield rows[start : start + chunk_rows]


def _scaled(flat: torch.Tensor, selector: slice | torch.Tensor, temperature: float) -> torch.Tensor:
    """The selected rows in float32, less their row maximum, divided by the temperature.

    Softmax is unchanged by the shift, and it keeps ``x / T`` from overflowing float32
    for logits near the dtype's range when T < 1. New memory, which callers modify in place.
    """
    picked = flat[selector] if isinstance(selector, slice) else flat.index_select(0, selector)
    rows = picked.to(torch.float32, copy=True)
    return rows.sub_(rows.amax(dim=-1, keepdim=True)).div_(temperature)


def _kl_rows(p: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Per-row sum of ``p * diff`` where terms with p = 0 count 0 (``diff`` is overwritten there)."""
    diff.masked_fill_(p == 0, 0.0)
    return torch.linalg.vecdot(p, diff)


class _KDLoss(torch.autograd.Function):
    """Chunked KD loss: saves its inputs and per-row log-normalisers; the backward recomputes per chunk."""

    @staticmethod
    def forward(ctx, student, teacher, temperature, rows, chunk_rows):  # type: ignore[override]
        vocab = student.shape[-1]
        s_flat, t_flat = student.reshape(-1, vocab), teacher.reshape(-1, vocab)
        n = s_flat.shape[0] if rows is None else rows.numel()
        log_norms = torch.empty(2, n, dtype=torch.float32, device=student.device)  # lse of s/T, of t/T
        total = torch.zeros((), dtype=torch.float64, device=student.device)
        done = 0
        for selector in _selectors(s_flat.shape[0], rows, chunk_rows):
            s = _scaled(s_flat, selector, temperature)
            t = _scaled(t_flat, selector, temperature)
            lse_s, lse_t = torch.logsumexp(s, dim=-1), torch.logsumexp(t, dim=-1)
            p = (t - lse_t[:, None]).exp_()
            kl = _kl_rows(p, t.sub_(s)) - lse_t + lse_s
            total += kl.sum(dtype=torch.float64)
            log_norms[0, done : done + len(kl)] = lse_s
            log_norms[1, done : done + len(kl)] = lse_t
            done += len(kl)
            del s, t, p
        ctx.save_for_backward(student, teacher, log_norms, *(() if rows is None else (rows,)))
        ctx.temperature, ctx.chunk_rows, ctx.n, ctx.masked = temperature, chunk_rows, n, rows is not None
        return (total * (temperature * temperature / n)).to(torch.float32)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        student, teacher, log_norms, *maybe_rows = ctx.saved_tensors
        rows = maybe_rows[0] if ctx.masked else None
        temperature, vocab = ctx.temperature, student.shape[-1]
        s_flat, t_flat = student.reshape(-1, vocab), teacher.reshape(-1, vocab)
        grad = (torch.zeros_like if ctx.masked else torch.empty_like)(s_flat)
        scale = grad_out.to(torch.float32) * (temperature / ctx.n)
        done = 0
        for selector in _selectors(s_flat.shape[0], rows, ctx.chunk_rows):
            q = _scaled(s_flat, selector, temperature)
            k = len(q)
            q.sub_(log_norms[0, done : done + k, None]).exp_()
            q.sub_(_scaled(t_flat, selector, temperature).sub_(log_norms[1, done : done + k, None]).exp_())
            grad[selector] = q.mul_(scale).to(grad.dtype)
            done += k
            del q
        return grad.view(student.shape), None, None, None, None

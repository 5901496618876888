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
memory is a few float32 chunk buffers per worker: on a GPU about 1/32 of the
positions, at least 4 MiB and at most 64 MiB each; on CPU 1 MiB each, so that
the passes over a chunk stay in the caches, and the chunks are spread over
torch's intra-op thread count of Python threads (``max_chunk_elems`` fixes the
size instead). All arithmetic runs in float32 (the loss sum in float64),
whatever the input dtype. ``kernel="triton"`` runs the fused kernels of
``distill.kernels.kd_loss`` instead (the default on CUDA); this module stays
their reference.

Per row the forward uses KL(p || q) = sum_v p_v (t_v - s_v)/T - lse_t + lse_s
(with sum_v p_v = 1); a term with p_v = 0 counts 0, so teacher logits of -inf
(tokens it rules out) give a finite loss.
"""

from __future__ import annotations

import math
import numbers

import torch

from distill.cpu_workers import for_each
from distill.errors import DistillError, VocabAlignmentError
from distill.kernels.runtime import load as load_kernels
from distill.kernels.runtime import use_triton

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("kd_loss",)

#: Bounds of the elements of one float32 chunk buffer and the chunk count aimed at. On CPU a
#: chunk of about 1 MiB of float32 stays in the caches across the passes over it; on a GPU the
#: chunks are large (4 MiB .. 64 MiB) so that each kernel launch has work enough.
MIN_CHUNK_ELEMS = 1 << 20
MAX_CHUNK_ELEMS = 1 << 24
CPU_CHUNK_ELEMS = 1 << 18
TARGET_CHUNKS = 32
#: The most negative float32: a teacher logit of -inf becomes this, so that exp gives 0 and 0 * (t - s) stays 0.
_FLOAT32_LOWEST = torch.finfo(torch.float32).min


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    *,
    max_chunk_elems: int | None = None,
    kernel: str = "auto",
) -> torch.Tensor:
    """Return the float32 scalar KD loss of ``student_logits`` against ``teacher_logits``.

    Both are ``[..., vocab]`` with the same shape; ``mask`` (optional) is a boolean
    tensor of the leading shape, True where a position counts. Raises
    VocabAlignmentError when the vocabularies differ (align them before: see
    ``distill.vocab``), DistillError for other bad arguments or an empty mask.
    ``max_chunk_elems`` sets the elements of one chunk buffer of the PyTorch path
    (default: automatic). ``kernel``: "torch" (this module), "triton" (the fused
    kernels of ``distill.kernels.kd_loss``) or "auto" (Triton on CUDA, PyTorch elsewhere).
    """
    rows = _valid_rows(student_logits, teacher_logits, temperature, mask)
    if max_chunk_elems is not None and (isinstance(max_chunk_elems, bool) or not isinstance(max_chunk_elems, int)
                                        or max_chunk_elems < 1):
        raise DistillError(f"kd_loss: max_chunk_elems must be a positive integer, got {max_chunk_elems!r}")
    if use_triton(kernel, student_logits.device, "kd_loss"):
        return load_kernels("kd_loss").kd_loss(student_logits, teacher_logits, temperature, mask)
    vocab = student_logits.shape[-1]
    n = student_logits[..., 0].numel() if rows is None else rows.numel()
    chunk_rows = max(1, _chunk_elems(n, vocab, max_chunk_elems, student_logits.device) // vocab)
    return _KDLoss.apply(student_logits, teacher_logits.detach(), float(temperature), rows, chunk_rows)


def _valid_rows(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None
) -> torch.Tensor | None:
    """Check the arguments; return the flat indices of the valid rows (None: all rows)."""
    if student.dim() < 1 or teacher.dim() < 1:
        raise DistillError(
            f"kd_loss: logits need a last (vocabulary) axis, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
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
    if student.shape[-1] == 0:
        raise DistillError(f"kd_loss: logits need a non-empty last (vocabulary) axis, got {tuple(student.shape)}")
    if not (student.is_floating_point() and teacher.is_floating_point()):
        raise DistillError(f"kd_loss: logits must be floating point, got {student.dtype} and {teacher.dtype}")
    if teacher.device != student.device:
        raise DistillError(f"kd_loss: student ({student.device}) and teacher ({teacher.device}) must be on one device")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise DistillError(f"kd_loss: temperature must be a number, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise DistillError(f"kd_loss: temperature must be a finite number > 0, got {temperature!r}")
    if mask is None:
        if student.numel() == 0:
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


def _chunk_elems(n_rows: int, vocab: int, requested: int | None, device: torch.device) -> int:
    """Elements of one chunk buffer: ``requested``; on CPU a cache-sized chunk; else about
    1/TARGET_CHUNKS of the logits within the bounds."""
    if requested is not None:
        return requested
    if device.type == "cpu":
        return CPU_CHUNK_ELEMS
    return min(MAX_CHUNK_ELEMS, max(MIN_CHUNK_ELEMS, n_rows * vocab // TARGET_CHUNKS))


def _chunks(n_rows: int, rows: torch.Tensor | None, chunk_rows: int) -> list[tuple[int, slice | torch.Tensor, int]]:
    """``(index, selector, offset)`` of consecutive chunks of valid rows: a slice of rows or a tensor of
    row indices, and the chunk's first position among the valid rows."""
    count = n_rows if rows is None else rows.numel()
    return [
        (i, slice(start, start + chunk_rows) if rows is None else rows[start : start + chunk_rows], start)
        for i, start in enumerate(range(0, count, chunk_rows))
    ]


def _scaled(flat: torch.Tensor, selector: slice | torch.Tensor, temperature: float) -> torch.Tensor:
    """The selected rows in float32, less their row maximum, divided by the temperature.

    Softmax is unchanged by the shift, and it keeps ``x / T`` from overflowing float32
    for logits near the dtype's range when T < 1. New memory, which callers modify in place.
    """
    picked = flat[selector] if isinstance(selector, slice) else flat.index_select(0, selector)
    rows = picked.to(torch.float32, copy=True)
    return rows.sub_(rows.amax(dim=1, keepdim=True)).div_(temperature)


class _KDLoss(torch.autograd.Function):
    """Chunked KD loss: saves its inputs and per-row log-normalisers; the backward recomputes per chunk."""

    @staticmethod
    def forward(ctx, student, teacher, temperature, rows, chunk_rows):  # type: ignore[override]
        vocab = student.shape[-1]
        s_flat, t_flat = student.reshape(-1, vocab), teacher.reshape(-1, vocab)
        n = s_flat.shape[0] if rows is None else rows.numel()
        log_norms = torch.empty(2, n, dtype=torch.float32, device=student.device)  # lse of s/T, of t/T
        chunks = _chunks(s_flat.shape[0], rows, chunk_rows)
        totals = torch.empty(len(chunks), dtype=torch.float64, device=student.device)

        def work(index: int, selector: slice | torch.Tensor, offset: int) -> None:
            s = _scaled(s_flat, selector, temperature)
            t = _scaled(t_flat, selector, temperature)
            e = torch.exp(s)
            lse_s = e.sum(dim=1).log_()
            torch.exp(t, out=e)
            lse_t = e.sum(dim=1).log_()
            # sum_v p_v (t_v - s_v) = sum_v exp(t_v) (t_v - s_v) / exp(lse_t); a term with exp(t_v) = 0
            # is 0 * (-inf or nan) only where a logit is -inf, and counts 0 (nansum)
            kl = torch.nansum(e.mul_(t.sub_(s)), dim=1).div_(lse_t.exp()) - lse_t + lse_s
            totals[index] = kl.sum(dtype=torch.float64)
            log_norms[0, offset : offset + len(kl)] = lse_s
            log_norms[1, offset : offset + len(kl)] = lse_t

        for_each(lambda chunk: work(*chunk), chunks, student.device)
        total = totals.sum()
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

        def work(index: int, selector: slice | torch.Tensor, offset: int) -> None:
            q = _scaled(s_flat, selector, temperature)
            k = len(q)
            q.sub_(log_norms[0, offset : offset + k, None]).exp_()
            q.sub_(_scaled(t_flat, selector, temperature).sub_(log_norms[1, offset : offset + k, None]).exp_())
            if isinstance(selector, slice):  # a view of grad: write into it (out= casts to its dtype)
                torch.mul(q, scale, out=grad[selector])
            else:
                grad[selector] = q.mul_(scale).to(grad.dtype)

        for_each(lambda chunk: work(*chunk), _chunks(s_flat.shape[0], rows, ctx.chunk_rows), student.device)
        return grad.view(student.shape), None, None, None, None

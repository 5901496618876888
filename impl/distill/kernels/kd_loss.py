"""The KD loss in Triton: forward and backward fused, one pass over the logits per direction.

Same loss and gradient as ``distill.kd`` (the reference; see there for the formula):
one program per row of ``[rows, vocab]`` logits walks the vocabulary in blocks.

- Forward: an online softmax per row. For the student and the teacher it keeps
  the running maximum ``m`` of the raw logits and ``z = sum exp((x - m)/T)``; with
  ``a = (t - m_t)/T`` and ``b = (s - m_s)/T`` it also keeps
  ``w = sum exp(a) * (a - b)`` (terms with exp(a) = 0 count 0, so teacher logits of
  -inf are fine). When a maximum grows, the sums are rescaled to it. The row's
  KL is ``w/z_t - log z_t + log z_s``; the row's ``m`` and ``log z`` of both are
  saved (4 floats per row) for the backward.
- Backward: ``dS = scale * (exp((s - m_s)/T - log z_s) - exp((t - m_t)/T - log z_t))``
  with ``scale = grad_out * T / n``, written once; masked rows get zeros without
  reading their logits.

All arithmetic is float32, whatever the logits' dtype; the per-row losses are
summed in float64 by the caller.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from distill.kernels.runtime import launching

#: Vocabulary entries per block (a power of two).
DEFAULT_BLOCK = 4096


@triton.jit
def _kd_forward(s_ptr, t_ptr, valid_ptr, stats_ptr, kl_ptr, s_stride, t_stride, n_rows, vocab, temperature,
                HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    valid = tl.full((), 1, tl.int1)
    if HAS_MASK:
        valid = tl.load(valid_ptr + row) != 0
    s_row = s_ptr + row.to(tl.int64) * s_stride
    t_row = t_ptr + row.to(tl.int64) * t_stride
    limit = tl.where(valid, vocab, 0)  # a masked row reads nothing
    offsets = tl.arange(0, BLOCK)
    neg_inf = float("-inf")
    m_s = tl.full((), neg_inf, tl.float32)
    m_t = tl.full((), neg_inf, tl.float32)
    z_s = tl.zeros((), tl.float32)
    z_t = tl.zeros((), tl.float32)
    w = tl.zeros((), tl.float32)
    for start in range(0, vocab, BLOCK):
        cols = start + offsets
        inside = cols < limit
        s = tl.load(s_row + cols, mask=inside, other=neg_inf).to(tl.float32)
        t = tl.load(t_row + cols, mask=inside, other=neg_inf).to(tl.float32)
        new_m_s = tl.maximum(m_s, tl.max(s, axis=0))
        new_m_t = tl.maximum(m_t, tl.max(t, axis=0))
        # Rescale the sums kept so far to the new maxima (nothing kept yet: nothing to rescale).
        d_s = tl.where(z_s > 0, (m_s - new_m_s) / temperature, 0.0)
        d_t = tl.where(z_t > 0, (m_t - new_m_t) / temperature, 0.0)
        alpha_t = tl.exp(d_t)
        w = alpha_t * (w + (d_t - d_s) * z_t)
        z_t = alpha_t * z_t
        z_s = tl.exp(d_s) * z_s
        a = tl.where(t == neg_inf, neg_inf, (t - new_m_t) / temperature)
        b = tl.where(s == neg_inf, neg_inf, (s - new_m_s) / temperature)
        e_a = tl.exp(a)
        z_t += tl.sum(e_a, axis=0)
        z_s += tl.sum(tl.exp(b), axis=0)
        w += tl.sum(tl.where(e_a > 0, e_a * (a - b), 0.0), axis=0)
        m_s = new_m_s
        m_t = new_m_t
    log_z_s = tl.log(z_s)
    log_z_t = tl.log(z_t)
    kl = w / z_t - log_z_t + log_z_s
    tl.store(kl_ptr + row, tl.where(valid, kl, 0.0))
    tl.store(stats_ptr + row, m_s)  # a masked row's stats (-inf) are never used
    tl.store(stats_ptr + n_rows + row, log_z_s)
    tl.store(stats_ptr + 2 * n_rows + row, m_t)
    tl.store(stats_ptr + 3 * n_rows + row, log_z_t)


@triton.jit
def _kd_backward(s_ptr, t_ptr, valid_ptr, stats_ptr, scale_ptr, grad_ptr, s_stride, t_stride, g_stride, n_rows,
                 vocab, temperature, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    valid = tl.full((), 1, tl.int1)
    if HAS_MASK:
        valid = tl.load(valid_ptr + row) != 0
    s_row = s_ptr + row.to(tl.int64) * s_stride
    t_row = t_ptr + row.to(tl.int64) * t_stride
    g_row = grad_ptr + row.to(tl.int64) * g_stride
    m_s = tl.load(stats_ptr + row)
    log_z_s = tl.load(stats_ptr + n_rows + row)
    m_t = tl.load(stats_ptr + 2 * n_rows + row)
    log_z_t = tl.load(stats_ptr + 3 * n_rows + row)
    scale = tl.load(scale_ptr)
    limit = tl.where(valid, vocab, 0)  # a masked row reads nothing and gets zeros
    offsets = tl.arange(0, BLOCK)
    for start in range(0, vocab, BLOCK):
        cols = start + offsets
        s = tl.load(s_row + cols, mask=cols < limit).to(tl.float32)
        t = tl.load(t_row + cols, mask=cols < limit).to(tl.float32)
        q = tl.exp((s - m_s) / temperature - log_z_s)
        p = tl.exp((t - m_t) / temperature - log_z_t)
        grad = tl.where(valid, scale * (q - p), 0.0)
        tl.store(g_row + cols, grad.to(grad_ptr.dtype.element_ty), mask=cols < vocab)


def _block(vocab: int, block: int | None) -> int:
    """The block width: ``block`` (a power of two), or the default capped at the vocabulary's next power of two."""
    if block is not None:
        if block < 1 or block & (block - 1):
            raise ValueError(f"block must be a power of two, got {block}")
        return block
    return min(DEFAULT_BLOCK, triton.next_power_of_2(vocab))


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``[..., vocab]`` as ``[rows, vocab]`` with unit stride along the vocabulary (a view where possible)."""
    flat = x.reshape(-1, x.shape[-1])
    return flat if flat.stride(-1) == 1 else flat.contiguous()


class _TritonKDLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, temperature, valid, block):  # type: ignore[override]
        s, t = _rows(student), _rows(teacher)
        n_rows, vocab = s.shape
        stats = torch.empty(4, n_rows, dtype=torch.float32, device=s.device)
        kl = torch.empty(n_rows, dtype=torch.float32, device=s.device)
        valid_arg = valid if valid is not None else kl  # unread without a mask
        with launching():
            _kd_forward[(n_rows,)](s, t, valid_arg, stats, kl, s.stride(0), t.stride(0), n_rows, vocab,
                                   float(temperature), HAS_MASK=valid is not None, BLOCK=block)
        n = torch.tensor(n_rows, device=s.device) if valid is None else valid.sum()
        ctx.save_for_backward(s, t, stats, n, *(() if valid is None else (valid,)))
        ctx.temperature, ctx.block, ctx.shape = float(temperature), block, student.shape
        return (kl.sum(dtype=torch.float64) * (temperature * temperature) / n).to(torch.float32)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        s, t, stats, n, *maybe_valid = ctx.saved_tensors
        valid = maybe_valid[0] if maybe_valid else None
        n_rows, vocab = s.shape
        grad = torch.empty((n_rows, vocab), dtype=s.dtype, device=s.device)
        scale = (grad_out.to(torch.float32) * ctx.temperature / n).reshape(1)
        with launching():
            _kd_backward[(n_rows,)](s, t, valid if valid is not None else scale, stats, scale, grad, s.stride(0),
                                    t.stride(0), grad.stride(0), n_rows, vocab, ctx.temperature,
                                    HAS_MASK=valid is not None, BLOCK=ctx.block)
        return grad.view(ctx.shape), None, None, None, None


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None = None,
            *, block: int | None = None) -> torch.Tensor:
    """The float32 KD loss of ``distill.kd.kd_loss`` by the fused kernels; arguments already checked.

    ``mask`` is a bool tensor of the leading shape (None: every position counts);
    ``block`` sets the vocabulary entries per block (default: automatic).
    """
    valid = None if mask is None else mask.reshape(-1).to(device=student.device, dtype=torch.int8)
    return _TritonKDLoss.apply(student, teacher.detach(), float(temperature), valid,
                               _block(student.shape[-1], block))

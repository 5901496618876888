"""Quantized weight blocks of llama.cpp, in vectorised torch (CPU and CUDA).

``dequantize`` agrees bit for bit with ``gguf.quants.dequantize`` (the same
float32 operations in the same order). ``quantize`` writes the bytes of
llama.cpp's reference quantizers without importance matrix: Q4_K searches an
affine (scale, min) per 32 weights (``make_qkx2_quants``), Q6_K a symmetric
scale per 16 weights (``make_qx_quants``), both with llama.cpp's float32
operations in its order (sums accumulated one term after another); the
per-sub-block scales are quantized to 6 or 8 bits relative to a fp16
super-block scale and the weights re-rounded against the stored scales. Q5_0,
Q8_0 and BF16 are llama.cpp's rounding too.

Layouts (little-endian), per block:
- Q8_0: 32 weights in 34 bytes: fp16 d, int8 q[32]; w = d*q.
- Q5_0: 32 weights in 22 bytes: fp16 d, 32 high bits (uint32), 16 bytes of low
  nibbles (weights 0-15 low, 16-31 high); w = d*(q - 16). llama.cpp's fallback
  for Q4_K tensors whose rows are not a multiple of 256.
- Q4_K: 256 weights in 144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit
  scales and mins for 8 sub-blocks of 32, 128 bytes of 4-bit quants;
  w = d*sc[j]*q - dmin*m[j].
- Q6_K: 256 weights in 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits),
  int8 scales[16], fp16 d; w = d*scale[j]*(q - 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from distill.cpu_workers import for_each
from distill.errors import QuantError
from distill.kernels.runtime import load as load_kernels
from distill.kernels.runtime import use_triton

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("dequantize",)

QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q4_K", "Q6_K")
#: Types whose blocks carry fp16 scales, and the byte offsets of those scales in a block.
SCALE_FIELDS: dict[str, dict[str, int]] = {
    "Q8_0": {"d": 0},
    "Q5_0": {"d": 0},
    "Q4_K": {"d": 0, "dmin": 2},
    "Q6_K": {"d": 208},
}
_GROUP_MAX_EPS = 1e-15
_BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)
#: Work on at most this many blocks at a time in the quantizers (bounded temporary memory); on CPU the
#: chunks go to one-thread workers (``distill.cpu_workers``): the searches are many small ops.
_QUANT_CHUNK_BLOCKS = 2048


def qtype_name(qtype: str | GGMLQuantizationType) -> str:
    """The name of a supported type ("Q4_K"), from a name or a gguf enum; QuantError otherwise."""
    name = qtype.name if isinstance(qtype, GGMLQuantizationType) else str(qtype)
    if name not in QTYPES:
        raise QuantError(f"unsupported quantization type {name!r} (supported: {', '.join(QTYPES)})")
    return name


def block_elems(qtype: str | GGMLQuantizationType) -> int:
    """Weights per block (1 for the plain float types)."""
    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype_name(qtype)]][0]


def block_bytes(qtype: str | GGMLQuantizationType) -> int:
    """Bytes per block."""
    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype_name(qtype)]][1]


def byte_size(n_elements: int, qtype: str | GGMLQuantizationType) -> int:
    """Bytes that ``n_elements`` weights take in ``qtype`` (a whole number of blocks required)."""
    elems = block_elems(qtype)
    if n_elements % elems:
        raise QuantError(f"{n_elements} weights are not a whole number of {qtype_name(qtype)} blocks of {elems}")
    return n_elements // elems * block_bytes(qtype)


# -- helpers -------------------------------------------------------------------------------


def _fp16_field(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The fp16 value at byte ``offset`` of each block, as float32 of shape (n_blocks, 1)."""
    return blocks[:, offset : offset + 2].contiguous().view(torch.float16).float()


def _fp16_bytes(values: torch.Tensor) -> torch.Tensor:
    """float32 (n,) -> fp16 little-endian bytes (n, 2)."""
    return values.to(torch.float16).reshape(-1, 1).view(torch.uint8)


def _as_blocks(raw: torch.Tensor, qtype: str) -> torch.Tensor:
    if raw.dtype != torch.uint8:
        raise QuantError(f"{qtype} data must be uint8 bytes, got {raw.dtype}")
    if raw.dim() == 0:
        raise QuantError(f"{qtype} data must be rows of bytes, got a 0-dimensional tensor")
    if raw.shape[-1] % block_bytes(qtype):
        raise QuantError(f"{qtype} data has {raw.shape[-1]} bytes per row, expected a multiple of {block_bytes(qtype)}")
    return raw.reshape(-1, block_bytes(qtype))


def check_scales(raw: torch.Tensor, qtype: str | GGMLQuantizationType) -> None:
    """Raise QuantError naming the first block whose fp16 scale (d or dmin) is NaN or Inf."""
    name = qtype_name(qtype)
    fields = SCALE_FIELDS.get(name)
    if not fields:
        return
    blocks = _as_blocks(raw, name)
    for field, offset in fields.items():
        values = _fp16_field(blocks, offset).reshape(-1)
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise QuantError(
                f"{name} block {index} has a non-finite fp16 scale {field}={float(values[index])} "
                f"({int(bad.sum())} of {values.numel()} blocks); block scales must be finite"
            )


# -- dequantization ----------------------------------------------------------------------------
# Each kernel writes the float32 weights of ``blocks`` into ``out`` (n_blocks, block_elems),
# with the same float32 operations in the same order as gguf's numpy code (bit-exact).


def _dequant_q8_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(blocks[:, 2:].view(torch.int8))
    out.mul_(_fp16_field(blocks, 0))


def _dequant_q5_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    qs = blocks[:, 6:]
    q = torch.empty((n, 2, 16), dtype=torch.uint8, device=blocks.device)
    torch.bitwise_and(qs, 0x0F, out=q[:, 0])
    torch.bitwise_right_shift(qs, 4, out=q[:, 1])
    high = blocks[:, 2:6].reshape(n, 4, 1) >> _BIT_SHIFTS.to(blocks.device)
    q.view(n, 32).bitwise_or_((high & 1).reshape(n, 32) << 4)
    out.copy_(q.view(n, 32))
    out.sub_(16).mul_(_fp16_field(blocks, 0))


def _words(blocks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``blocks`` (uint8 rows of a whole number of words) viewed as ``dtype`` words, copied first only
    where misaligned (a start or a row stride that is not a multiple of the word size)."""
    size = torch.empty((), dtype=dtype).element_size()
    if blocks.data_ptr() % size or blocks.stride(0) % size:
        blocks = blocks.clone(memory_format=torch.contiguous_format)  # new, aligned memory (contiguous() may keep the start)
    return blocks.view(dtype)


def _q4_k_scales_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack the 12 scale bytes of Q4_K blocks into 8 six-bit scales and 8 mins each (uint8).

    Works on the three 32-bit words, four fields at a time: bytes 0-3 and 4-7 hold
    sc[0..3] and m[0..3] in their low 6 bits and the top 2 bits of sc[4..7] and
    m[4..7]; bytes 8-11 hold the low 4 bits of sc[4..7] (low nibbles) and m[4..7].
    """
    words = _words(packed, torch.int32)
    low_sc, low_m, high = words[:, 0], words[:, 1], words[:, 2]
    sc = torch.stack([low_sc & 0x3F3F3F3F, (high & 0x0F0F0F0F) | ((low_sc >> 2) & 0x30303030)], dim=1)
    mn = torch.stack([low_m & 0x3F3F3F3F, ((high >> 4) & 0x0F0F0F0F) | ((low_m >> 2) & 0x30303030)], dim=1)
    return sc.view(torch.uint8), mn.view(torch.uint8)


def _dequant_q4_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    sc, mn = _q4_k_scales_mins(blocks[:, 4:16])
    scale = (_fp16_field(blocks, 0) * sc).reshape(n, 8, 1)
    offset = (_fp16_field(blocks, 2) * mn).reshape(n, 8, 1)
    qs = _words(blocks, torch.int32)[:, 4:].reshape(n, 4, 8)  # four bytes of quants per word
    q = torch.empty((n, 4, 2, 8), dtype=torch.int32, device=blocks.device)
    torch.bitwise_and(qs, 0x0F0F0F0F, out=q[:, :, 0])
    torch.bitwise_and(qs >> 4, 0x0F0F0F0F, out=q[:, :, 1])
    weights = out.view(n, 8, 32)
    weights.copy_(q.view(torch.uint8).view(n, 8, 32))
    weights.mul_(scale).sub_(offset)


_Q6_K_SHIFTS = torch.tensor([0, 2, 4, 6], dtype=torch.int16).reshape(1, 1, 4, 1)


def _dequant_q6_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    n = blocks.shape[0]
    words = _words(blocks, torch.int16)  # two bytes per word: 64 of ql, 32 of qh, 8 of scales, d
    ql, qh = words[:, 0:64].reshape(n, 2, 32), words[:, 64:96].reshape(n, 2, 1, 16)
    scale = (_fp16_field(blocks, 208) * blocks[:, 192:208].view(torch.int8)).reshape(n, 16, 1)
    q = torch.empty((n, 2, 2, 32), dtype=torch.int16, device=blocks.device)
    torch.bitwise_and(ql, 0x0F0F, out=q[:, :, 0])
    torch.bitwise_and(ql >> 4, 0x0F0F, out=q[:, :, 1])
    q.view(n, 2, 4, 16).bitwise_or_(((qh >> _Q6_K_SHIFTS.to(blocks.device)) & 0x0303) << 4)
    q8 = q.view(torch.uint8).sub_(32)  # q - 32 in two's complement, read as int8 below
    weights = out.view(n, 16, 16)
    weights.copy_(q8.view(torch.int8).view(n, 16, 16))
    weights.mul_(scale)


_PLAIN_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_DEQUANT = {"Q8_0": _dequant_q8_0, "Q5_0": _dequant_q5_0, "Q4_K": _dequant_q4_k, "Q6_K": _dequant_q6_k}
#: Weights per kernel call on CPU: the float32 temporaries of one call stay in the caches.
_CPU_CHUNK_ELEMS = 1 << 18
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_OUT_DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dequantize(
    raw: torch.Tensor,
    qtype: str | GGMLQuantizationType,
    *,
    check: bool = True,
    kernel: str = "auto",
    dtype: torch.dtype | str = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Blocks ``(..., n_blocks*block_bytes)`` uint8 -> ``dtype`` ``(..., n_blocks*block_elems)`` on raw's device.

    ``check`` first verifies that every fp16 block scale is finite (QuantError
    otherwise); pass False for data already checked (it costs a device sync).
    ``kernel``: "torch", "triton" (``distill.kernels.dequant``) or "auto" (Triton
    on CUDA, PyTorch elsewhere); both give the same bits. ``dtype`` is float32,
    float16 or bfloat16, or its name (float32 weights rounded once, to nearest even). ``out``
    (optional): a contiguous ``dtype`` tensor on raw's device with as many entries,
    written and returned in the output's shape.
    """
    name = qtype_name(qtype)
    blocks = _as_blocks(raw, name)
    out_shape = (*raw.shape[:-1], raw.shape[-1] // block_bytes(name) * block_elems(name))
    dtype = _OUT_DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype not in OUT_DTYPES:
        raise QuantError(f"dequantize: dtype must be one of float32, float16, bfloat16, got {dtype}")
    result = _output(out, out_shape, dtype, raw.device)
    if name in _PLAIN_DTYPES:  # always new memory: never an alias of the (possibly memory-mapped) bytes
        result.copy_(blocks.contiguous().view(_PLAIN_DTYPES[name]).reshape(out_shape))
        return result
    if check:
        check_scales(raw, name)
    flat = result.view(-1, block_elems(name))
    if use_triton(kernel, raw.device, f"dequantize {name}"):
        load_kernels("dequant").dequantize_into(blocks.contiguous(), name, flat)
    else:
        _dequant_torch(blocks, name, flat)
    return result


def _output(out: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``out`` checked and viewed as ``shape``, or a new tensor."""
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if out.dtype != dtype or out.device != device or not out.is_contiguous() or out.numel() != math.prod(shape):
        raise QuantError(
            f"dequantize: out must be a contiguous {dtype} tensor of {math.prod(shape)} entries on {device}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    return out.view(shape)


def _dequant_torch(blocks: torch.Tensor, name: str, out: torch.Tensor) -> None:
    """The PyTorch kernels over ``blocks`` into ``out`` (n_blocks, block_elems); on CPU in cache-sized
    chunks over one-thread workers (``distill.cpu_workers``)."""
    n = blocks.shape[0]
    step = max(1, _CPU_CHUNK_ELEMS // block_elems(name)) if blocks.device.type == "cpu" else max(n, 1)

    def work(start: int) -> None:
        part = out[start : start + step]
        if out.dtype == torch.float32:
            _DEQUANT[name](blocks[start : start + step], part)
        else:
            staging = torch.empty(part.shape, dtype=torch.float32, device=blocks.device)
            _DEQUANT[name](blocks[start : start + step], staging)
            part.copy_(staging)

    for_each(work, range(0, n, step), blocks.device)


# -- quantization ------------------------------------------------------------------------------


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C ``roundf`` (ties away from zero), exact for all float32 values."""
    a = v.abs()
    fl = torch.floor(a)
    return torch.sign(v) * (fl + torch.floor(2 * (a - fl)))


def _quant_bf16(x: torch.Tensor) -> torch.Tensor:
    """float32 -> bf16 bytes as ggml: round to nearest even; a NaN is not rounded but keeps its
    sign and top bits, made quiet (rounding it could carry into the sign and give 0 or Inf)."""
    n = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    is_nan = (n & 0x7FFFFFFF) > 0x7F800000
    n = torch.where(is_nan, (n >> 16) | 64, (n + (0x7FFF + ((n >> 16) & 1))) >> 16)
    return torch.stack([n & 0xFF, (n >> 8) & 0xFF], dim=-1).to(torch.uint8).reshape(-1, 2)


def _fp16_super_scale(values: torch.Tensor, qtype: str, what: str) -> torch.Tensor:
    """fp16-rounded super-block scales as float32; QuantError when they overflow fp16."""
    stored = values.to(torch.float16).float()
    if not bool(torch.isfinite(stored).all()):
        raise QuantError(f"cannot quantize to {qtype}: the block scale {what} overflows fp16 (weights too large)")
    return stored


def _quant_q8_0(x: torch.Tensor) -> torch.Tensor:
    blocks = x.reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    _fp16_super_scale(d, "Q8_0", "d")
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = _round_half_away(blocks * inv).to(torch.int8).view(torch.uint8)
    return torch.cat([_fp16_bytes(d), q], dim=1)


def _quant_q5_0(x: torch.Tensor) -> torch.Tensor:
    blocks = x.reshape(-1, 32)
    peak = blocks.gather(1, blocks.abs().argmax(dim=1, keepdim=True))
    d = peak / -16
    _fp16_super_scale(d, "Q5_0", "d")
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(blocks * inv + 16.5).clamp(0, 31).to(torch.uint8)
    n = blocks.shape[0]
    qs = (q[:, :16] & 0x0F) | (q[:, 16:] << 4)
    high = ((q >> 4).reshape(n, 4, 8) << _BIT_SHIFTS.to(x.device)).sum(dim=2, dtype=torch.uint8)
    return torch.cat([_fp16_bytes(d), high, qs], dim=1)


def _ordered_sum(terms: torch.Tensor) -> torch.Tensor:
    """Sum ``terms`` over dim -2, one term after another in float32, as a C loop ``s += t[i]`` does.

    The quantizers' decisions (which candidate scale wins) depend on the last bit of these
    sums, so the order of the additions is llama.cpp's, not a pairwise or vectorised one.
    """
    total = terms[..., 0, :].clone()
    for i in range(1, terms.shape[-2]):
        total += terms[..., i, :]
    return total


def _f32(value: float) -> torch.Tensor:
    """A float32 scalar tensor (arithmetic with it rounds to float32, as C float arithmetic does)."""
    return torch.tensor(value, dtype=torch.float32)


def _search_affine(x: torch.Tensor, w: torch.Tensor, nmax: int, rmin: float, rdelta: float,
                   nstep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """llama.cpp's weighted affine search (``make_qkx2_quants``) on each column of ``x`` (n, groups).

    Fits x ~ scale*l - the_min with levels l in [0, nmax]: starts from the range of the
    column (its minimum clamped to at most 0), then for k = 0..nstep rounds x onto
    ``(nmax + rmin + k*rdelta) / (max - min)`` levels per unit, fits scale and min by weighted
    least squares and keeps the fit when its weighted squared error is lower. A kept fit's
    min is where the next candidates are measured from. Returns scale, the_min (both
    (groups,)) and the levels (n, groups) of the fit kept; a constant column gets scale 0.
    """
    hi = x.amax(dim=0)
    lo = x.amin(dim=0)
    lo = torch.where(lo > 0, torch.zeros_like(lo), lo)
    flat = hi == lo
    sum_w, sum_x = _ordered_sum(torch.stack([w, w * x]))

    def span() -> torch.Tensor:
        return torch.where(flat, torch.ones_like(hi), hi - lo)

    def error(scale: torch.Tensor, offset: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        diff = scale * levels + offset - x
        return _ordered_sum(w * (diff * diff))

    inverse = _f32(nmax) / span()
    scale = 1 / inverse
    levels = torch.round(inverse * (x - lo)).clamp_(0, nmax)
    best = error(scale, lo, levels)
    for k in range(nstep + 1):
        candidate = _f32(rmin) + _f32(rdelta) * _f32(k) + _f32(nmax)
        trial = torch.round(candidate / span() * (x - lo)).clamp_(0, nmax)
        wl = w * trial
        sum_l, sum_l2, sum_xl = _ordered_sum(torch.stack([wl, wl * trial, wl * x]))
        det = sum_w * sum_l2 - sum_l * sum_l
        fit_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        fit_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        positive = fit_min > 0
        fit_min = torch.where(positive, torch.zeros_like(fit_min), fit_min)
        fit_scale = torch.where(positive, sum_xl / sum_l2, fit_scale)
        err = error(fit_scale, fit_min, trial)
        better = (det > 0) & (err < best) & ~flat
        best = torch.where(better, err, best)
        scale = torch.where(better, fit_scale, scale)
        lo = torch.where(better, fit_min, lo)
        levels = torch.where(better, trial, levels)
    scale = torch.where(flat, torch.zeros_like(scale), scale)
    levels = torch.where(flat, torch.zeros_like(levels), levels)
    return scale, -lo, levels


def _nearest_byte(v: torch.Tensor) -> torch.Tensor:
    """C's ``(uint8_t) nearest_int(v)`` (round half to even, then modulo 256), as int64."""
    return torch.round(v).to(torch.int64).remainder(256)


def _positive_max(values: torch.Tensor) -> torch.Tensor:
    """The largest value of each row if positive, else +0.0 (never -0.0: it would be stored as fp16 0x8000)."""
    top = values.amax(dim=1, keepdim=True)
    return torch.where(top > 0, top, torch.zeros_like(top))


def _quant_q4_k(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // 256
    sub = x.reshape(n * 8, 32).T.contiguous()  # (32, groups): one sub-block of 32 weights per column
    rms = torch.sqrt((_ordered_sum(sub * sub) / 32).double()).float()  # correctly rounded, as C sqrtf (torch's float32 sqrt is not)
    weights = rms + sub.abs()
    scale, mins, search_levels = _search_affine(sub, weights, nmax=15, rmin=-1.0, rdelta=0.1, nstep=20)
    scale, mins = scale.reshape(n, 8), mins.reshape(n, 8)

    max_scale, max_min = (_positive_max(v) for v in (scale, mins))
    inv_scale = torch.where(max_scale > 0, 63 / max_scale, torch.zeros_like(max_scale))
    inv_min = torch.where(max_min > 0, 63 / max_min, torch.zeros_like(max_min))
    sc = _nearest_byte(inv_scale * scale).clamp(max=63)
    mn = _nearest_byte(inv_min * mins).clamp(max=63)
    d = _fp16_super_scale(max_scale / 63, "Q4_K", "d")
    dmin = _fp16_super_scale(max_min / 63, "Q4_K", "dmin")

    eff_scale = (d * sc).reshape(1, n * 8)
    eff_min = (dmin * mn).reshape(1, n * 8)
    safe = torch.where(eff_scale != 0, eff_scale, torch.ones_like(eff_scale))
    q = torch.round((sub + eff_min) / safe).clamp(0, 15)
    q = torch.where(eff_scale != 0, q, search_levels)  # a sub-block whose scale rounds to 0 keeps its search levels
    q = q.T.to(torch.uint8).reshape(n, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)

    sc, mn = sc.to(torch.uint8), mn.to(torch.uint8)
    packed = torch.cat(
        [
            sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
            mn[:, :4] | ((mn[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4),
        ],
        dim=1,
    )
    return torch.cat([_fp16_bytes(d), _fp16_bytes(dmin), packed, qs], dim=1)


def _search_symmetric(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """llama.cpp's symmetric search (``make_qx_quants``, weights x^2) on each column of ``x`` (n, groups).

    Fits x ~ scale*l with l in [-nmax, nmax-1]: the sign of the scale puts the weight of
    largest magnitude on -nmax; the fit at ``nmax / max`` levels per unit is the start,
    and each of ``(nmax + 0.1*k) / max``, k = -9..9, replaces it when its weighted
    least-squares fit explains more. Returns the scales (groups,) and the levels + nmax
    (n, groups) of the fit kept; a column below 1e-15 in magnitude gets scale 0, levels 0.
    """
    peak = x.gather(0, x.abs().argmax(dim=0, keepdim=True)).reshape(-1)
    tiny = peak.abs() < _GROUP_MAX_EPS
    peak = torch.where(tiny, torch.ones_like(peak), peak)
    w = x * x
    wx = w * x

    def fit(levels_per_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = torch.round(levels_per_unit * x).clamp_(-nmax, nmax - 1)
        sum_lx, sum_l2 = _ordered_sum(torch.stack([wx * levels, w * levels * levels]))
        return levels, sum_lx, sum_l2

    levels, sum_lx, sum_l2 = fit(_f32(-nmax) / peak)
    scale = torch.where(sum_l2 != 0, sum_lx / sum_l2, torch.zeros_like(sum_lx))
    best = scale * sum_lx
    for k in (*range(-9, 0), *range(1, 10)):
        trial, sum_lx, sum_l2 = fit(-(_f32(nmax) + _f32(0.1) * _f32(k)) / peak)
        better = (sum_l2 > 0) & (sum_lx * sum_lx > best * sum_l2)
        scale = torch.where(better, sum_lx / sum_l2, scale)
        best = torch.where(better, scale * sum_lx, best)
        levels = torch.where(better, trial, levels)
    scale = torch.where(tiny, torch.zeros_like(scale), scale)
    levels = torch.where(tiny, torch.full_like(levels, -nmax), levels)
    return scale, levels + nmax


def _quant_q6_k(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // 256
    groups = x.reshape(n * 16, 16).T.contiguous()  # (16, groups)
    scales, search_levels = _search_symmetric(groups, nmax=32)
    scales = scales.reshape(n, 16)
    max_scale = scales.gather(1, scales.abs().argmax(dim=1, keepdim=True))
    empty = max_scale.abs() < _GROUP_MAX_EPS
    inv = -128 / torch.where(empty, torch.ones_like(max_scale), max_scale)
    d = _fp16_super_scale(torch.where(empty, torch.zeros_like(inv), 1 / inv), "Q6_K", "d")
    sc = torch.round(inv * scales).clamp(max=127)
    sc = torch.where(empty, torch.zeros_like(sc), sc)

    eff = (d * sc).reshape(1, n * 16)
    safe = torch.where(eff != 0, eff, torch.ones_like(eff))
    q = torch.round(groups / safe).clamp(-32, 31) + 32
    q = torch.where(eff != 0, q, search_levels)  # a group whose scale rounds to 0 keeps its search levels
    q = torch.where(empty.repeat_interleave(16, dim=1).reshape(1, n * 16), torch.zeros_like(q), q)
    q = q.T.to(torch.uint8).reshape(n, 2, 4, 32)
    low, high = q & 0x0F, q >> 4
    ql = torch.cat([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], dim=2).reshape(n, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
    sc_bytes = sc.to(torch.int8).view(torch.uint8)
    return torch.cat([ql, qh, sc_bytes, _fp16_bytes(d.reshape(-1))], dim=1)


_QUANT = {"Q8_0": _quant_q8_0, "Q5_0": _quant_q5_0, "Q4_K": _quant_q4_k, "Q6_K": _quant_q6_k}


def quantize(x: torch.Tensor, qtype: str | GGMLQuantizationType) -> torch.Tensor:
    """float ``(..., n)`` -> uint8 blocks ``(..., n/block_elems*block_bytes)`` on x's device.

    ``n`` must be a multiple of the block size; block-quantized types need finite input.
    """
    name = qtype_name(qtype)
    if x.dim() == 0 or x.shape[-1] % block_elems(name):
        width = x.shape[-1] if x.dim() else 0
        raise QuantError(f"cannot quantize rows of {width} weights to {name}: not a multiple of the block size {block_elems(name)}")
    out_shape = (*x.shape[:-1], x.shape[-1] // block_elems(name) * block_bytes(name))
    flat = x.detach().reshape(-1)
    if name == "F32":
        return flat.float().contiguous().view(torch.uint8).reshape(out_shape)
    if name == "F16":
        return flat.to(torch.float16).view(torch.uint8).reshape(out_shape)
    flat = flat.float().contiguous()
    if name == "BF16":
        return _quant_bf16(flat).reshape(out_shape)
    if not bool(torch.isfinite(flat).all()):
        raise QuantError(f"cannot quantize to {name}: the input has NaN or Inf values")
    out = torch.empty((flat.numel() // block_elems(name), block_bytes(name)), dtype=torch.uint8, device=flat.device)
    workers = torch.get_num_threads() if flat.device.type == "cpu" else 1
    step = min(_QUANT_CHUNK_BLOCKS, max(1, -(-out.shape[0] // workers)))  # at least one chunk per CPU worker

    def work(start: int) -> None:
        out[start : start + step] = _QUANT[name](flat[start * block_elems(name) : (start + step) * block_elems(name)])

    for_each(work, range(0, out.shape[0], step), flat.device)
    return out.reshape(out_shape)


@dataclass(frozen=True)
class TensorData:
    """One stored tensor: its GGUF name, type, torch-order shape and raw bytes.

    ``raw`` is a uint8 tensor of shape ``(*shape[:-1], shape[-1] // block_elems * block_bytes)``
    (memory-mapped when read from a file, on any device when generated).
    """

    name: str
    qtype: str
    shape: tuple[int, ...]
    raw: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.raw.numel()

    def dequantize(self, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weights as a ``dtype`` tensor of ``shape`` on ``device`` (default: where raw is)."""
        raw = self.raw.to(device)  # no copy where it already is (device None: where it is)
        if dtype in OUT_DTYPES:
            return dequantize(raw, self.qtype, check=False, dtype=dtype).reshape(self.shape)
        return dequantize(raw, self.qtype, check=False).reshape(self.shape).to(dtype)


def raw_shape(shape: tuple[int, ...], qtype: str | GGMLQuantizationType) -> tuple[int, ...]:
    """The byte shape of a tensor of torch-order ``shape`` stored in ``qtype``."""
    return (*shape[:-1], byte_size(shape[-1], qtype))

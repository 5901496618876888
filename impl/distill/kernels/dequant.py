"""Dequantization of llama.cpp blocks in Triton: Q4_K, Q6_K, Q5_0 and Q8_0 to bf16, f16 or f32.

Bit-exact with ``distill.quant`` (the reference) and ``gguf.quants.dequantize``:
each weight is computed with the same float32 operations in the same order
(Q4_K: ``(d*sc)*q - dmin*m``; Q6_K: ``(d*scale)*(q - 32)``; Q5_0: ``d*(q - 16)``;
Q8_0: ``q*d``) and rounded once to the output dtype (to nearest, ties to even).
Kernels are launched with floating-point contraction off, so that no
multiply-add is fused into one rounding. The block layouts are those of
``distill.quant``; one program expands ``BLOCKS`` consecutive blocks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from distill.kernels.runtime import launching

#: Blocks per program (a power of two).
DEFAULT_BLOCKS = 8


@triton.jit
def _fp16_at(base, offset, live):
    """The little-endian fp16 at byte ``offset`` of the blocks at ``base``, as float32."""
    low = tl.load(base + offset, mask=live).to(tl.uint16)
    high = tl.load(base + offset + 1, mask=live).to(tl.uint16)
    return (low | (high << 8)).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _store(ptr, w, live, OUT_BF16: tl.constexpr):
    """Store float32 ``w``; with OUT_BF16, as bf16 bits rounded to nearest even (``ptr`` is int16).

    The bf16 rounding is done on the bits, so that it is the same compiled and interpreted
    (the interpreter's own float32 -> bf16 cast truncates).
    """
    if OUT_BF16:
        bits = w.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        tl.store(ptr, bits.to(tl.uint16).to(tl.int16, bitcast=True), mask=live)
    else:
        tl.store(ptr, w.to(ptr.dtype.element_ty), mask=live)


@triton.jit
def _q4_k(raw_ptr, out_ptr, n_blocks, BLOCKS: tl.constexpr, OUT_BF16: tl.constexpr):
    block = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)[:, None]
    e = tl.arange(0, 256)[None, :]
    live = block < n_blocks
    base = raw_ptr + block.to(tl.int64) * 144
    d = _fp16_at(base, 0, live)
    dmin = _fp16_at(base, 2, live)
    j = e // 32  # sub-block: scales 0-3 are 6-bit fields of bytes 4-7 (mins: 8-11), 4-7 are split
    low_sc = tl.load(base + 4 + j % 4, mask=live).to(tl.int32)
    low_m = tl.load(base + 8 + j % 4, mask=live).to(tl.int32)
    high = tl.load(base + 12 + j % 4, mask=live).to(tl.int32)
    sc = tl.where(j < 4, low_sc & 63, (high & 15) | ((low_sc >> 6) << 4))
    mn = tl.where(j < 4, low_m & 63, (high >> 4) | ((low_m >> 6) << 4))
    within = e % 64  # 32 bytes per 64 weights: low nibbles first, then high nibbles
    byte = tl.load(base + 16 + 32 * (e // 64) + within % 32, mask=live).to(tl.int32)
    q = tl.where(within < 32, byte & 15, byte >> 4)
    w = (d * sc.to(tl.float32)) * q.to(tl.float32) - dmin * mn.to(tl.float32)
    _store(out_ptr + block.to(tl.int64) * 256 + e, w, live, OUT_BF16)


@triton.jit
def _q6_k(raw_ptr, out_ptr, n_blocks, BLOCKS: tl.constexpr, OUT_BF16: tl.constexpr):
    block = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)[:, None]
    e = tl.arange(0, 256)[None, :]
    live = block < n_blocks
    base = raw_ptr + block.to(tl.int64) * 210
    half = e // 128  # each half of 128 weights: 64 bytes of ql, 32 of qh
    k = e % 128 // 32
    lane = e % 32
    low = tl.load(base + 64 * half + 32 * (k % 2) + lane, mask=live).to(tl.int32)
    high = tl.load(base + 128 + 32 * half + lane, mask=live).to(tl.int32)
    q = ((low >> (4 * (k // 2))) & 15) | (((high >> (2 * k)) & 3) << 4)
    scale = tl.load(base + 192 + e // 16, mask=live).to(tl.int8, bitcast=True).to(tl.float32)
    d = _fp16_at(base, 208, live)
    w = (d * scale) * (q - 32).to(tl.float32)
    _store(out_ptr + block.to(tl.int64) * 256 + e, w, live, OUT_BF16)


@triton.jit
def _q5_0(raw_ptr, out_ptr, n_blocks, BLOCKS: tl.constexpr, OUT_BF16: tl.constexpr):
    block = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)[:, None]
    e = tl.arange(0, 32)[None, :]
    live = block < n_blocks
    base = raw_ptr + block.to(tl.int64) * 22
    d = _fp16_at(base, 0, live)
    high = tl.load(base + 2 + e // 8, mask=live).to(tl.int32)
    byte = tl.load(base + 6 + e % 16, mask=live).to(tl.int32)
    q = tl.where(e < 16, byte & 15, byte >> 4) | (((high >> (e % 8)) & 1) << 4)
    w = d * (q - 16).to(tl.float32)
    _store(out_ptr + block.to(tl.int64) * 32 + e, w, live, OUT_BF16)


@triton.jit
def _q8_0(raw_ptr, out_ptr, n_blocks, BLOCKS: tl.constexpr, OUT_BF16: tl.constexpr):
    block = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)[:, None]
    e = tl.arange(0, 32)[None, :]
    live = block < n_blocks
    base = raw_ptr + block.to(tl.int64) * 34
    d = _fp16_at(base, 0, live)
    q = tl.load(base + 2 + e, mask=live).to(tl.int8, bitcast=True).to(tl.float32)
    _store(out_ptr + block.to(tl.int64) * 32 + e, q * d, live, OUT_BF16)


#: qtype -> its kernel
KERNELS = {"Q4_K": _q4_k, "Q6_K": _q6_k, "Q5_0": _q5_0, "Q8_0": _q8_0}


def dequantize_into(blocks: torch.Tensor, qtype: str, out: torch.Tensor, *, blocks_per_program: int = DEFAULT_BLOCKS) -> None:
    """Expand ``blocks`` (contiguous uint8 ``(n, block_bytes)``) of ``qtype`` into ``out`` (``n*block_elems`` entries).

    ``out`` is a contiguous float32, float16 or bfloat16 tensor on the blocks' device.
    """
    kernel = KERNELS[qtype]
    n_blocks = blocks.shape[0]
    if n_blocks == 0:
        return
    grid = (triton.cdiv(n_blocks, blocks_per_program),)
    bf16 = out.dtype == torch.bfloat16
    with launching():
        kernel[grid](blocks, out.view(torch.int16) if bf16 else out, n_blocks, BLOCKS=blocks_per_program,
                     OUT_BF16=bf16, enable_fp_fusion=False)

"""Falsifiers of distill-frozen-q4k-teacher-v1 (FT-FROZEN-008): ``distill.quant.quantize`` writes the bytes of
llama.cpp's reference quantizer.

The reference is ``libgguf`` (llama.cpp's ``quantize_q4_K``, ``quantize_q6_K``, ``quantize_q5_0``,
``quantize_q8_0`` and ``ggml_fp32_to_bf16`` compiled, without importance matrix), never the code under
test. The weights are random normal, heavy-tailed (Student t with 2 degrees of freedom and Cauchy),
of mixed magnitudes from one 32-weight sub-block to the next (so that some sub-block scales round to 0),
and a few hand-made edge rows (zeros, constants, one outlier, all positive, all negative).
"""

from __future__ import annotations

import libgguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType

from distill import quant

#: what these falsifiers check: the quantizers of ``distill.quant``
QUANTIZERS = [f"distill.quant:{name}" for name in (
    "quantize", "_quant_q8_0", "_quant_q5_0", "_quant_q4_k", "_quant_q6_k", "_quant_bf16", "_search_affine",
    "_search_symmetric", "_ordered_sum", "_positive_max", "_nearest_byte", "_round_half_away", "_fp16_bytes")]
BLOCK_TYPES = ("Q4_K", "Q6_K", "Q5_0", "Q8_0")
ROWS, WIDTH, SEEDS = 200, 512, (0, 1, 2, 3)  # seed 3's Cauchy rows need llama.cpp's 18 Q6_K candidates exactly


def _weights(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((ROWS, WIDTH)).astype(np.float32)
    if kind == "student-t":
        return rng.standard_t(2, (ROWS, WIDTH)).astype(np.float32)
    if kind == "cauchy":
        return rng.standard_cauchy((ROWS, WIDTH)).astype(np.float32)
    # mixed: each sub-block of 32 scaled by 10^k, k in -6..2, and the edge rows first
    x = rng.standard_normal((ROWS, WIDTH)) * 10.0 ** rng.integers(-6, 3, size=(ROWS, WIDTH // 32)).repeat(32, axis=1)
    x[0], x[1], x[2] = 0.0, 1.5, -2.0
    x[3, :256] = 0.0
    x[4, ::97] = 1e3
    x[5], x[6] = np.abs(x[5]), -np.abs(x[6])
    x[7, :16] = 0.0
    x[8, :32] = np.linspace(-127.0, 127.0, 32)  # Q8_0's d is exactly 1
    x[9, :16] = np.float32(1e-15) * np.linspace(1.0, 0.5, 16)  # a Q6_K group at exactly the "all zero" bound
    return x.astype(np.float32)


KINDS = ("normal", "student-t", "cauchy", "mixed")


def _differing_rows(qtype: str, x: np.ndarray) -> list[int]:
    want = np.asarray(libgguf.quantize_rows(x, GGMLQuantizationType[qtype]), dtype=np.uint8).reshape(ROWS, -1)
    got = quant.quantize(torch.from_numpy(x), qtype).numpy()
    assert got.shape == want.shape, (qtype, got.shape, want.shape)
    return [int(r) for r in np.nonzero((got != want).any(axis=1))[0]]


@pytest.mark.falsifies("FT-FROZEN-008", covers=QUANTIZERS, mutants=[
    "quant-rows-of-the-first-dimension", "q4k-search-from-first-min", "quant-sums-pairwise", "q4k-zero-scale-levels-dropped",
    "q6k-zero-scale-levels-dropped", "q6k-one-more-candidate", "q4k-float32-sqrt", "q4k-negative-zero-dmin", "q8-0-round-half-even"])
def test_quantizer_bytes_equal_llama_cpp(capsys: pytest.CaptureFixture[str]) -> None:
    compared = dict.fromkeys(BLOCK_TYPES, 0)
    for qtype in BLOCK_TYPES:
        for kind in KINDS:
            for seed in SEEDS:
                differing = _differing_rows(qtype, _weights(kind, seed))
                assert not differing, f"{qtype} {kind} seed {seed}: rows {differing[:10]} differ from llama.cpp's bytes"
                compared[qtype] += ROWS
    for qtype in BLOCK_TYPES:  # rows of a 3-D tensor: the leading dimensions kept, the bytes of its rows
        x = _weights("normal", 7)
        got = quant.quantize(torch.from_numpy(x).reshape(4, ROWS // 4, WIDTH), qtype)
        want = np.asarray(libgguf.quantize_rows(x, GGMLQuantizationType[qtype]), dtype=np.uint8).reshape(4, ROWS // 4, -1)
        assert tuple(got.shape) == want.shape and np.array_equal(got.numpy(), want), qtype
    with capsys.disabled():
        print("\nrows byte-identical with llama.cpp (libgguf), per type:",
              ", ".join(f"{qtype} {n}" for qtype, n in compared.items()))
    assert compared == dict.fromkeys(BLOCK_TYPES, ROWS * len(KINDS) * len(SEEDS))


#: NaN bit patterns of every class: quiet and signalling, both signs, payloads that fill the top bits
NAN_BITS = (0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA00000, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFF8000,
            0x7FFF8001, 0x7F80FFFF)


@pytest.mark.falsifies("FT-FROZEN-008", covers=QUANTIZERS, mutants=["bf16-nan-rounded", "bf16-nan-bits-lost"])
def test_bf16_keeps_every_nan_and_rounds_the_rest_as_ggml() -> None:
    nan = np.array(NAN_BITS, dtype=np.uint32).view(np.float32)
    rng = np.random.default_rng(5)
    # halfway cases: the tie goes to the even bf16, whichever of bits 16 and 17 is set
    ties = np.array([0x3F808000, 0x3F818000, 0x3F828000, 0x3F838000, 0xBF818000, 0x3F808001, 0x3F817FFF],
                    dtype=np.uint32).view(np.float32)
    ordinary = np.concatenate([rng.standard_normal(64) * 10.0 ** rng.integers(-40, 38, 64), ties, [0.0, -0.0, np.inf, -np.inf,
                               3.3895e38, 1e-45, 1e-3]]).astype(np.float32)
    x = np.concatenate([nan, ordinary])[None, :]
    got = quant.quantize(torch.from_numpy(x), "BF16").numpy().view(np.uint16).reshape(-1)
    want = np.asarray(libgguf.quantize_rows(x, GGMLQuantizationType.BF16), dtype=np.uint8).view(np.uint16).reshape(-1)
    np.testing.assert_array_equal(got, want)
    # ggml's rule for NaN, written out: the top 16 bits with the quiet bit set (never rounded)
    np.testing.assert_array_equal(got[:len(NAN_BITS)], (np.array(NAN_BITS, dtype=np.uint32) >> 16 | 64).astype(np.uint16))
    decoded = quant.dequantize(torch.from_numpy(got.view(np.uint8).copy()), "BF16")
    assert bool(decoded[:len(NAN_BITS)].isnan().all()), decoded[:len(NAN_BITS)]


@pytest.mark.falsifies("FT-FROZEN-008", covers=QUANTIZERS, mutants=["quant-scale-overflow-unchecked", "quant-width-unchecked",
                                                                    "quant-non-finite-accepted"])
def test_what_cannot_be_quantized_is_refused_by_name() -> None:
    for qtype in BLOCK_TYPES:
        with pytest.raises(quant.QuantError, match=rf"^cannot quantize to {qtype}: the block scale d overflows fp16"):
            quant.quantize(torch.full((1, 256), 1e12), qtype)
        bad = torch.zeros(2, 256)
        bad[1, 17] = float("nan")
        with pytest.raises(quant.QuantError, match=rf"^cannot quantize to {qtype}: the input has NaN or Inf values"):
            quant.quantize(bad, qtype)
        width = {"Q4_K": 256, "Q6_K": 256}.get(qtype, 32)
        with pytest.raises(quant.QuantError, match=rf"^cannot quantize rows of {width + 16} weights to {qtype}: not a "
                                                   rf"multiple of the block size {width}"):
            quant.quantize(torch.zeros(2, 3, width + 16), qtype)
    # a constant negative block: d is 0 and only Q4_K's min scale overflows
    with pytest.raises(quant.QuantError, match=r"^cannot quantize to Q4_K: the block scale dmin overflows fp16"):
        quant.quantize(torch.full((1, 256), -1e12), "Q4_K")
    with pytest.raises(quant.QuantError, match=r"^cannot quantize rows of 0 weights to Q8_0"):
        quant.quantize(torch.tensor(1.0), "Q8_0")


@pytest.mark.falsifies("FT-FROZEN-008", covers=QUANTIZERS, mutants=["quant-f16-through-bf16"])
def test_plain_types_are_numpy_s_bytes() -> None:
    x = np.random.default_rng(9).standard_normal((3, 40)).astype(np.float32) * 100
    for qtype, dtype in (("F32", np.float32), ("F16", np.float16)):
        got = quant.quantize(torch.from_numpy(x), qtype).numpy()
        np.testing.assert_array_equal(got, x.astype(dtype).view(np.uint8).reshape(3, -1), err_msg=qtype)

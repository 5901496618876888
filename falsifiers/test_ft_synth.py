"""Falsifiers of the synthetic teachers (FT-FROZEN-009): the random blocks that ``pv make-model`` and the
falsifiers' test models are made of decode, by gguf-py (llama.cpp's own Python package, an implementation
written elsewhere), to finite weights centred on 0 with the standard deviation asked for.

A synthetic Q4_K teacher whose weights were off-centre or of another scale would still load and
run, and every falsifier that uses it would test a model unlike the real one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.synth import random_blocks

gguf = pytest.importorskip("gguf", reason="the reference decoder is gguf-py's")
from gguf.quants import dequantize  # noqa: E402

SYNTH = ["distill.synth:random_blocks", "distill.synth:_sample_q4_k", "distill.synth:_sample_q6_k",
         "distill.synth:_sample_small", "distill.synth:_SAMPLERS", "distill.synth:_jitter",
         "distill.synth:_random_signs", "distill.synth:_scale_bytes"]
SHAPE = (256, 512)
#: relative error of the measured standard deviation, and |mean| in standard deviations, over 131072 weights
STD_RTOL, MEAN_ATOL = 0.05, 0.03


@pytest.mark.falsifies("FT-FROZEN-009", covers=SYNTH, mutants=["synth-q4k-mins-off-centre", "synth-q6k-scale-halved"])
def test_random_blocks_decode_to_centred_weights_of_the_asked_scale(evidence) -> None:
    for qtype in ("Q4_K", "Q6_K", "Q8_0", "Q5_0"):
        for std in (0.02, 0.5):
            blocks = random_blocks(qtype, SHAPE, std, torch.Generator().manual_seed(7), torch.device("cpu"))
            weights = dequantize(blocks.numpy().reshape(SHAPE[0], -1), getattr(gguf.GGMLQuantizationType, qtype))
            assert weights.shape == SHAPE and np.isfinite(weights).all(), qtype
            measured, mean = float(weights.std()), float(weights.mean())
            evidence(f"{qtype}_std_ratio_{std}", measured / std)
            assert abs(measured / std - 1) <= STD_RTOL, (qtype, std, measured)
            assert abs(mean) <= MEAN_ATOL * std, (qtype, std, mean)
            rows = weights.mean(axis=1)  # no row is shifted: each row's mean within 5 of its standard errors
            assert np.abs(rows).max() <= 5 * std / np.sqrt(SHAPE[1]) * 1.5, (qtype, std, np.abs(rows).max())


@pytest.mark.falsifies("FT-FROZEN-009", covers=SYNTH, mutants=["synth-blocks-unseeded"])
def test_the_seed_decides_the_blocks() -> None:
    def drawn(seed: int) -> torch.Tensor:
        return random_blocks("Q4_K", (4, 256), 0.02, torch.Generator().manual_seed(seed), torch.device("cpu"))

    assert torch.equal(drawn(3), drawn(3)) and not torch.equal(drawn(3), drawn(4))

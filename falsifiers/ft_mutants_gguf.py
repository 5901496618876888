"""Planted defects of the quantizers (distill.quant) and of the GGUF student export (distill.export),
registered with ``ft_mutants.mutant``.

A source mutant rewrites one function's source (each edit must match exactly once) and runs it in a
copy of its module's namespace, so one line of the code under test is wrong and the rest is unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from ft_mutants import mutant, replace


def source_mutant(mp: pytest.MonkeyPatch, target: str, edits: list[tuple[str, str]]) -> None:
    """Replace ``module:function`` by its source with each ``(old, new)`` edit applied once."""
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    for old, new in edits:
        if source.count(old) != 1:
            raise ValueError(f"mutant does not fit {target}: {old!r} occurs {source.count(old)} times, not once")
        source = source.replace(old, new)
    namespace: dict[str, Any] = dict(vars(module))
    exec(compile(source, f"<mutant of {target}>", "exec"), namespace)  # noqa: S102 (a planted defect)
    mutated: Callable[..., Any] = namespace[name]
    replace(mp, target, lambda original: mutated)


# --- distill.quant: the quantizers ---------------------------------------------------------------


@mutant("q4k-search-from-first-min", "the Q4_K search measures every candidate from the block's first minimum"
                                     " (the fit's minimum is not moved to the best fit so far)")
def _q4k_first_min(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_search_affine", [
        ("    flat = hi == lo\n", "    flat = hi == lo\n    first = lo.clone()\n"),
        ("trial = torch.round(candidate / span() * (x - lo))", "trial = torch.round(candidate / (hi - first) * (x - first))"),
    ])


@mutant("quant-sums-pairwise", "the quantizers' weighted sums are torch's (pairwise, vectorised), not llama.cpp's order")
def _sums_pairwise(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.quant:_ordered_sum", lambda original: lambda terms: terms.sum(dim=-2))


@mutant("q4k-zero-scale-levels-dropped", "a Q4_K sub-block whose 6-bit scale rounds to 0 stores 0s, not its search levels")
def _q4k_zero_levels(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_q4_k", [
        ("q = torch.where(eff_scale != 0, q, search_levels)", "q = torch.where(eff_scale != 0, q, torch.zeros_like(q))")])


@mutant("q6k-zero-scale-levels-dropped", "a Q6_K group whose 8-bit scale rounds to 0 stores 32s, not its search levels")
def _q6k_zero_levels(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_q6_k", [
        ("q = torch.where(eff != 0, q, search_levels)", "q = torch.where(eff != 0, q, torch.full_like(q, 32))")])


@mutant("q6k-one-more-candidate", "the Q6_K search also tries (nmax + 1.0) / max, a 19th candidate llama.cpp does not")
def _q6k_more_candidates(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_search_symmetric", [("range(1, 10)", "range(1, 11)")])


@mutant("q4k-float32-sqrt", "the Q4_K weights take torch's float32 sqrt, which is not correctly rounded")
def _q4k_sqrt(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_q4_k", [
        ("torch.sqrt((_ordered_sum(sub * sub) / 32).double()).float()", "torch.sqrt(_ordered_sum(sub * sub) / 32)")])


@mutant("q4k-negative-zero-dmin", "a Q4_K block without a positive min stores dmin as -0.0 (fp16 0x8000)")
def _q4k_negative_zero(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.quant:_positive_max",
            lambda original: lambda values: values.amax(dim=1, keepdim=True).clamp(min=0))


@mutant("q8-0-round-half-even", "Q8_0 rounds its quants half to even (llama.cpp's roundf rounds half away from zero)")
def _q8_half_even(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_q8_0", [("_round_half_away(blocks * inv)", "torch.round(blocks * inv)")])


@mutant("bf16-nan-rounded", "BF16 rounds a NaN like a number (a payload can carry into the exponent or sign)")
def _bf16_nan_rounded(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_bf16", [
        ("n = torch.where(is_nan, (n >> 16) | 64, (n + (0x7FFF + ((n >> 16) & 1))) >> 16)",
         "n = (n + (0x7FFF + ((n >> 16) & 1))) >> 16")])


@mutant("bf16-nan-bits-lost", "BF16 keeps only the quiet bit of a NaN (5.9e-39, not NaN)")
def _bf16_nan_bits_lost(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:_quant_bf16", [("torch.where(is_nan, (n >> 16) | 64, ", "torch.where(is_nan, 64, ")])


@mutant("quant-scale-overflow-unchecked", "a block scale beyond fp16 is stored as Inf instead of refused")
def _overflow_unchecked(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.quant:_fp16_super_scale",
            lambda original: lambda values, qtype, what: values.to(torch.float16).float())


@mutant("quant-width-unchecked", "quantize does not check that a row is a whole number of blocks")
def _width_unchecked(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:quantize", [("if x.dim() == 0 or x.shape[-1] % block_elems(name):", "if False:")])


@mutant("quant-non-finite-accepted", "quantize takes NaN and Inf weights into the block search")
def _non_finite_accepted(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:quantize", [("if not bool(torch.isfinite(flat).all()):", "if False:")])


@mutant("quant-f16-through-bf16", "F16 weights are rounded through bf16 first")
def _f16_through_bf16(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:quantize", [("flat.to(torch.float16)", "flat.to(torch.bfloat16).to(torch.float16)")])


@mutant("quant-rows-of-the-first-dimension", "quantize takes the output shape from the first dimensions, not the last")
def _rows_first_dimension(mp: pytest.MonkeyPatch) -> None:
    source_mutant(mp, "distill.quant:quantize", [
        ("out_shape = (*x.shape[:-1], x.shape[-1] // block_elems(name) * block_bytes(name))",
         "out_shape = (*x.shape[:1], -1)")])


# --- the synthetic teachers' random blocks ----------------------------------------------------------------


@mutant("synth-q4k-mins-off-centre", "a synthetic Q4_K block's dmin is 6.5 d, not 7.5 d: its weights are off-centre")
def _synth_q4k_mins_off_centre(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def sample(n: int, std: float, gen: Any, device: Any) -> Any:
            synth = importlib.import_module("distill.synth")
            blocks = original(n, std, gen, device)
            d = torch.from_numpy(blocks[:, 0:2].numpy().copy().view(np.float16)).float().reshape(-1)
            blocks[:, 2:4] = synth._scale_bytes(6.5 * d)
            return blocks

        return sample

    replace(mp, "distill.synth:_sample_q4_k", build)
    mp.setitem(importlib.import_module("distill.synth")._SAMPLERS, "Q4_K", importlib.import_module("distill.synth")._sample_q4_k)


@mutant("synth-q6k-scale-halved", "synthetic Q6_K weights have half the standard deviation asked for")
def _synth_q6k_scale_halved(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda n, std, gen, device: original(n, std / 2, gen, device)

    replace(mp, "distill.synth:_sample_q6_k", build)
    mp.setitem(importlib.import_module("distill.synth")._SAMPLERS, "Q6_K", importlib.import_module("distill.synth")._sample_q6_k)


@mutant("synth-blocks-unseeded", "random blocks are drawn from torch's global generator, not the one given")
def _synth_blocks_unseeded(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda qtype, shape, std, gen, device: original(qtype, shape, std, torch.Generator().manual_seed(
            int(torch.randint(0, 2**31, ()))), device)

    replace(mp, "distill.synth:random_blocks", build)

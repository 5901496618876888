"""The models the benchmarks run: shape presets (shrinkable), in-memory synthetic GGUF models, FLOP counts.

A benchmark names a preset of ``distill.synth.PRESETS`` (the real Qwen2.5-Coder
shapes) and may shrink it for a CPU run (``--layers``, ``--vocab``); the JSON
records the shape it ran and whether it was the full one. Models are built
directly on the device with ``distill.synth.synth_tensors`` (random weights,
quantized there), with no file in between.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench import report

if TYPE_CHECKING:
    from distill.qwen2_gguf import GGUFModel
    from distill.model import Qwen2Config

TEACHER_PRESET = "qwen2.5-coder-7b"
STUDENT_PRESET = "qwen2.5-coder-0.5b"


def add_shape_arguments(parser: argparse.ArgumentParser, role: str, preset: str) -> None:
    """``--<role>-preset``, ``--<role>-layers`` and ``--<role>-vocab``: a preset, optionally shrunk."""
    parser.add_argument(f"--{role}-preset", default=preset, help=f"shape of the {role} (default {preset})")
    parser.add_argument(f"--{role}-layers", type=report.positive_int, default=None,
                        help=f"keep only this many layers of the {role} (default: all)")
    parser.add_argument(f"--{role}-vocab", type=report.positive_int, default=None,
                        help=f"vocabulary rows of the {role} (default: the preset's)")


def shape(args: argparse.Namespace, role: str) -> Qwen2Config:
    """The Qwen2Config a benchmark runs for ``role``: the preset with the requested overrides."""
    from distill.synth import PRESETS

    name = getattr(args, f"{role}_preset")
    if name not in PRESETS:
        raise report.BenchError(f"--{role}-preset {name!r}: unknown; known: {', '.join(PRESETS)}")
    config = PRESETS[name]
    changes = {"n_layers": getattr(args, f"{role}_layers"), "vocab_size": getattr(args, f"{role}_vocab")}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


def describe(config: Qwen2Config, preset: str) -> dict[str, Any]:
    """The shape as JSON, with whether it is the preset's full shape."""
    from distill.synth import PRESETS

    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {"preset": preset, **fields, "full_shape": config == PRESETS[preset],
            "parameters": parameter_count(config)}


def linear_parameters(config: Qwen2Config) -> int:
    """Weights of every matrix product of a forward: attention, MLP and the output head (not the embedding lookup)."""
    shapes = config.tensor_shapes()
    matrices = sum(math.prod(s) for name, s in shapes.items() if len(s) == 2 and name != "token_embd.weight")
    return matrices + (config.vocab_size * config.hidden_size if config.tied_embeddings else 0)


def parameter_count(config: Qwen2Config) -> int:
    """All weights of the model's tensors (the embedding once when tied)."""
    return sum(math.prod(s) for s in config.tensor_shapes().values())


def forward_flops(config: Qwen2Config, batch: int, seq: int) -> dict[str, float]:
    """FLOPs of one forward: 2 * matmul weights * tokens, plus causal attention (QK^T and PV, half the square)."""
    tokens = batch * seq
    matmul = 2.0 * linear_parameters(config) * tokens
    attention = config.n_layers * 2 * (2.0 * batch * config.n_heads * seq * seq * config.head_dim) / 2
    return {"matmul": matmul, "attention": attention, "total": matmul + attention,
            "model": "2 * (attention, MLP and output-head weights) * tokens + causal attention "
                     "(QK^T and PV: 2 * 2 * batch * heads * seq^2 * head_dim / 2 per layer)"}


def synth_model(config: Qwen2Config, quant: str, seed: int, device: torch.device) -> GGUFModel:
    """An in-memory GGUFModel of random weights in ``quant``, built on ``device`` (no file, no tokenizer)."""
    from distill.qwen2_gguf import GGUFModel
    from distill.synth import synth_tensors

    tensors = {t.name: t for t in synth_tensors(config, quant, seed, device=device)}
    quantized_bytes = sum(t.raw.numel() * t.raw.element_size() for t in tensors.values())
    return GGUFModel(Path(f"<in-memory {quant}>"), config, tensors, None, quantized_bytes)


def random_ids(vocab: int, batch: int, seq: int, device: torch.device, seed: int) -> torch.Tensor:
    """Token ids drawn uniformly from ``[0, vocab)``, the same for a given seed on every device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)


def gib(n: float | None) -> str:
    """Bytes as GiB with two decimals, ``-`` for unknown."""
    return "-" if n is None else f"{n / 2**30:.2f}"


def mean(values: list[float]) -> float:
    """Arithmetic mean (``math.fsum``) of a non-empty list."""
    return math.fsum(values) / len(values)

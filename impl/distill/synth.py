"""Shape-faithful Qwen2 models with random weights: presets, tensor streams, GGUF files.

Weights: matrices have std ``0.5/sqrt(in_features)`` (each projection keeps the
scale of its input), the output head ``1/sqrt(hidden)`` (logits of std about
1), norm weights near 1 and small biases, so activations stay finite through
every layer of the real shapes.

Quantized tensors: a matrix of at most ``QUANTIZE_MAX_ELEMENTS`` weights is
drawn from a normal distribution and quantized with ``distill.quant``; a larger
one is made of random *valid* blocks sampled directly (random quants, finite
fp16 scales chosen for the same std, mean about zero), which takes seconds
even for a 7B-shaped model and works on any device.

Quantization schemes (``quant``), with llama.cpp's rules:
- ``f32``: every tensor F32. ``bf16``: matrices BF16, norms and biases F32.
- ``q4_k``: every matrix Q4_K (llama.cpp ``--pure``).
- ``q4_k_m``: Q4_K, with Q6_K for the output head (or the embedding of a tied
  model) and for ``attn_v``/``ffn_down`` of the layers llama.cpp gives more
  bits (the first and last eighth, and every third layer between).
- Rows not a multiple of 256 cannot hold K-quants: Q4_K falls back to Q5_0 and
  Q6_K to Q8_0, as llama.cpp does (Qwen2.5 0.5B's hidden size is 896).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import torch

from distill.errors import DistillError
from distill.qwen2_gguf import write_gguf
from distill.tokenizer import Tokenizer, read_tokenizer
from distill.model import Qwen2, Qwen2Config, build_model
from distill.quant import TensorData, block_elems, quantize, raw_shape

PRESETS: dict[str, Qwen2Config] = {
    # Structurally a Qwen2.5 (GQA, biases, tied head) in miniature; 256-wide rows so K-quants apply.
    "tiny": Qwen2Config(vocab_size=1024, hidden_size=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_size=512,
                        context_length=2048, tied_embeddings=True),
    "qwen2.5-coder-0.5b": Qwen2Config(vocab_size=151936, hidden_size=896, n_layers=24, n_heads=14, n_kv_heads=2,
                                      ffn_size=4864, context_length=32768, tied_embeddings=True),
    "qwen2.5-coder-7b": Qwen2Config(vocab_size=152064, hidden_size=3584, n_layers=28, n_heads=28, n_kv_heads=4,
                                    ffn_size=18944, context_length=32768, tied_embeddings=False),
}
QUANTS = ("f32", "bf16", "q4_k", "q4_k_m")
QUANTIZE_MAX_ELEMENTS = 1 << 22
_K_FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}


def _more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of the layers whose attn_v/ffn_down get Q6_K in Q4_K_M."""
    eighth = n_layers // 8
    return layer < eighth or layer >= 7 * n_layers // 8 or (layer - eighth) % 3 == 2


def check_quant(quant: str) -> None:
    """Refuse a quantization scheme that is not one of ``QUANTS``."""
    if quant not in QUANTS:
        raise DistillError(f"unknown quantization {quant!r}; known: {', '.join(QUANTS)}")


def tensor_type(config: Qwen2Config, name: str, shape: tuple[int, ...], quant: str) -> str:
    """The storage type of tensor ``name`` in scheme ``quant``."""
    check_quant(quant)
    if len(shape) == 1 or quant == "f32":
        return "F32"
    if quant == "bf16":
        return "BF16"
    qtype = "Q4_K"
    if quant == "q4_k_m":
        head = name == "output.weight" or (name == "token_embd.weight" and config.tied_embeddings)
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if head or (name.endswith(("attn_v.weight", "ffn_down.weight")) and _more_bits(layer, config.n_layers)):
            qtype = "Q6_K"
    return _K_FALLBACK[qtype] if shape[-1] % 256 else qtype


def weight_std(config: Qwen2Config, name: str, shape: tuple[int, ...]) -> float:
    """Standard deviation of the random weights of tensor ``name``: ``1/sqrt(fan_in)``, halved except for the head."""
    head = name == "output.weight" or (name == "token_embd.weight" and config.tied_embeddings)
    return (1.0 if head else 0.5) / math.sqrt(shape[-1])


# -- random valid blocks ------------------------------------------------------------------------
# Each sampler returns uint8 blocks (n, block_bytes) whose weights have std about ``std`` and mean
# about zero: random quants, per-block scales set from the std of the quants' distribution.


def _scale_bytes(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.float16).reshape(-1, 1).view(torch.uint8)


def _jitter(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Per-block factors in [0.75, 1.25): blocks of different magnitudes, as in trained weights."""
    return 0.75 + 0.5 * torch.rand(n, generator=gen, device=device)


def _random_signs(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen, device=device).float() * 2 - 1


def _sample_q4_k(n: int, std: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    # w = d*sc*q - dmin*m with m = sc and dmin = 7.5*d: w = d*sc*(q - 7.5), q uniform 0..15 (std 4.61)
    blocks = torch.randint(0, 256, (n, 144), generator=gen, device=device, dtype=torch.uint8)
    six_bits = torch.randint(40, 64, (n, 8), generator=gen, device=device, dtype=torch.uint8)
    d = std / (4.61 * 51.5) * _jitter(n, gen, device)
    blocks[:, 0:2] = _scale_bytes(d)
    blocks[:, 2:4] = _scale_bytes(7.5 * d)
    blocks[:, 4:8] = six_bits[:, :4] | ((six_bits[:, 4:] >> 4) << 6)
    blocks[:, 8:12] = six_bits[:, :4] | ((six_bits[:, 4:] >> 4) << 6)
    blocks[:, 12:16] = (six_bits[:, 4:] & 0x0F) | ((six_bits[:, 4:] & 0x0F) << 4)
    return blocks


def _sample_q6_k(n: int, std: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    # w = d*scale*(q - 32), q uniform 0..63 (std 18.5), scales of random sign in 64..127
    blocks = torch.randint(0, 256, (n, 210), generator=gen, device=device, dtype=torch.uint8)
    scales = torch.randint(64, 128, (n, 16), generator=gen, device=device, dtype=torch.int16)
    scales = scales * torch.randint(0, 2, (n, 16), generator=gen, device=device, dtype=torch.int16).mul(2).sub(1)
    blocks[:, 192:208] = scales.to(torch.int8).view(torch.uint8)
    blocks[:, 208:210] = _scale_bytes(std / (18.5 * 95.5) * _jitter(n, gen, device))
    return blocks


def _sample_small(n: int, std: float, gen: torch.Generator, device: torch.device, width: int, q_std: float) -> torch.Tensor:
    # Q8_0 / Q5_0: one fp16 d of random sign, then random quants
    blocks = torch.randint(0, 256, (n, width), generator=gen, device=device, dtype=torch.uint8)
    blocks[:, 0:2] = _scale_bytes(std / q_std * _jitter(n, gen, device) * _random_signs(n, gen, device))
    return blocks


_SAMPLERS = {
    "Q4_K": _sample_q4_k,
    "Q6_K": _sample_q6_k,
    "Q8_0": lambda n, std, gen, dev: _sample_small(n, std, gen, dev, 34, 73.9),
    "Q5_0": lambda n, std, gen, dev: _sample_small(n, std, gen, dev, 22, 9.23),
}


def random_blocks(qtype: str, shape: tuple[int, ...], std: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Random valid ``qtype`` blocks for a tensor of ``shape``, weights of std about ``std``."""
    n = math.prod(shape) // block_elems(qtype)
    return _SAMPLERS[qtype](n, std, gen, device).reshape(raw_shape(shape, qtype))


def _generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)


def synth_tensors(config: Qwen2Config, quant: str, seed: int, device: str | torch.device = "cpu") -> Iterator[TensorData]:
    """The tensors of a random model of shape ``config`` in scheme ``quant``, one at a time, in file order."""
    device = torch.device(device)
    for index, (name, shape) in enumerate(config.tensor_shapes().items()):
        qtype = tensor_type(config, name, shape, quant)
        gen = _generator(seed, index, device)
        std = weight_std(config, name, shape)
        if name.endswith("norm.weight"):
            values = 1.0 + 0.05 * torch.randn(shape, generator=gen, device=device)
        elif name.endswith(".bias"):
            values = 0.02 * torch.randn(shape, generator=gen, device=device)
        elif qtype in _SAMPLERS and math.prod(shape) > QUANTIZE_MAX_ELEMENTS:
            yield TensorData(name, qtype, shape, random_blocks(qtype, shape, std, gen, device))
            continue
        else:
            values = std * torch.randn(shape, generator=gen, device=device)
        yield TensorData(name, qtype, shape, quantize(values, qtype))


def placeholder_tokenizer() -> Tokenizer:
    """An empty tokenizer, padded to the embedding rows for models made without a vocabulary file."""
    return Tokenizer("gpt2", "default", [], [], [])


def padded_tokenizer(tokenizer: Tokenizer, rows: int, source: str) -> Tokenizer:
    """``tokenizer`` with its tokens padded to ``rows`` by ``[PAD{i}]`` entries, as converters do."""
    n = len(tokenizer.tokens)
    if rows < n:
        raise DistillError(f"{source}: {rows} embedding rows cannot hold the vocabulary's {n} tokens")
    types = tokenizer.token_types or [int(gguf.TokenType.NORMAL)] * n
    return dataclasses.replace(
        tokenizer,
        tokens=tokenizer.tokens + [f"[PAD{i}]" for i in range(n, rows)],
        token_types=types + [int(gguf.TokenType.UNUSED)] * (rows - n),
    )


def make_model_file(
    path: str | Path, preset: str, quant: str, vocab_path: str | Path | None, seed: int, vocab_rows: int | None = None,
    *, on_tensor: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a random ``preset`` model in ``quant`` to ``path`` (streamed, atomic); return the path.

    The tokenizer comes from ``vocab_path`` (a GGUF file) padded to ``vocab_rows``
    embedding rows (default: its token count); without a vocabulary file, every
    token is a ``[PAD{i}]`` placeholder and the rows default to the preset's.
    ``on_tensor(done, total)`` is called after each tensor is made (for progress).
    """
    if preset not in PRESETS:
        raise DistillError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if vocab_rows is not None and vocab_rows < 1:
        raise DistillError(f"vocab_rows must be a positive integer, got {vocab_rows}")
    if vocab_path is not None and Path(path).exists() and os.path.samefile(path, vocab_path):
        raise DistillError(f"{path}: is the vocabulary file the model reads its tokenizer from; writing the model "
                           "there would replace it: choose another output file")
    if vocab_path is None:
        base, source = placeholder_tokenizer(), "no vocabulary file"
        rows = vocab_rows or PRESETS[preset].vocab_size
    else:
        base, source = read_tokenizer(vocab_path), str(vocab_path)
        rows = vocab_rows or len(base.tokens)
    tokenizer = padded_tokenizer(base, rows, source)
    config = dataclasses.replace(PRESETS[preset], vocab_size=rows)
    check_quant(quant)
    path = Path(path)
    tensors = synth_tensors(config, quant, seed)
    write_gguf(path, config, tensors if on_tensor is None else _counted(tensors, config, on_tensor), tokenizer)
    return path


def _counted(tensors: Iterator[TensorData], config: Qwen2Config,
             on_tensor: Callable[[int, int], None]) -> Iterator[TensorData]:
    total = len(config.tensor_shapes())
    for done, tensor in enumerate(tensors, 1):
        yield tensor
        on_tensor(done, total)


def make_model(
    config: Qwen2Config, quant: str, seed: int, *, dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu", keep_quantized: bool = False,
) -> Qwen2:
    """A random model of shape ``config`` built directly on ``device`` (no file)."""
    tensors = {t.name: t for t in synth_tensors(config, quant, seed, device)}
    return build_model(config, tensors, dtype=dtype, device=device, keep_quantized=keep_quantized)

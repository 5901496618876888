"""The Qwen2 forward against a float64 reference of the same equations written here with loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.errors import DistillError
from distill.model import QuantLinear, Qwen2Config, build_model
from distill.quant import TensorData, quantize

CONFIG = Qwen2Config(vocab_size=61, hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_size=48,
                     rms_eps=1e-5, rope_theta=1e4, context_length=64, tied_embeddings=False)


def random_weights(config: Qwen2Config, seed: int) -> dict[str, np.ndarray]:
    """Float64 weights by GGUF name: norms near 1, biases and matrices small and random."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in config.tensor_shapes().items():
        if name.endswith("norm.weight"):
            out[name] = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            out[name] = 0.3 * rng.standard_normal(shape)
        else:
            out[name] = rng.standard_normal(shape) / math.sqrt(shape[-1]) * (3.0 if "embd" in name else 1.0)
    return out


def as_tensors(weights: dict[str, np.ndarray], qtype: str = "F32") -> dict[str, TensorData]:
    def stored(name: str, w: np.ndarray) -> TensorData:
        kind = qtype if w.ndim == 2 else "F32"
        return TensorData(name, kind, w.shape, quantize(torch.from_numpy(w).float(), kind))

    return {name: stored(name, w) for name, w in weights.items()}


def reference_logits(config: Qwen2Config, w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Qwen2 in float64, position by position and head by head."""
    d, n_heads, n_kv = config.head_dim, config.n_heads, config.n_kv_heads
    half = d // 2

    def rmsnorm(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return v / math.sqrt(sum(t * t for t in v) / len(v) + config.rms_eps) * g

    def rope(vec: np.ndarray, pos: int) -> np.ndarray:
        out = vec.copy()
        for i in range(half):  # NeoX: dims i and i + d/2 rotate together
            angle = pos * config.rope_theta ** (-2.0 * i / d)
            c, s = math.cos(angle), math.sin(angle)
            out[i] = vec[i] * c - vec[i + half] * s
            out[i + half] = vec[i + half] * c + vec[i] * s
        return out

    x = [w["token_embd.weight"][t].copy() for t in ids]
    for layer in range(config.n_layers):
        p = f"blk.{layer}."
        h = [rmsnorm(v, w[p + "attn_norm.weight"]) for v in x]
        q = [w[p + "attn_q.weight"] @ v + w[p + "attn_q.bias"] for v in h]
        k = [w[p + "attn_k.weight"] @ v + w[p + "attn_k.bias"] for v in h]
        v_ = [w[p + "attn_v.weight"] @ v + w[p + "attn_v.bias"] for v in h]
        attn_out = []
        for i in range(len(ids)):
            heads = []
            for head in range(n_heads):
                kv = head // (n_heads // n_kv)
                qi = rope(q[i][head * d : (head + 1) * d], i)
                scores = [qi @ rope(k[j][kv * d : (kv + 1) * d], j) / math.sqrt(d) for j in range(i + 1)]
                top = max(scores)
                probs = [math.exp(s - top) for s in scores]
                total = sum(probs)
                heads.append(sum(pj / total * v_[j][kv * d : (kv + 1) * d] for j, pj in enumerate(probs)))
            attn_out.append(w[p + "attn_output.weight"] @ np.concatenate(heads))
        x = [xi + ai for xi, ai in zip(x, attn_out)]
        for i, xi in enumerate(x):
            hi = rmsnorm(xi, w[p + "ffn_norm.weight"])
            gate = w[p + "ffn_gate.weight"] @ hi
            up = w[p + "ffn_up.weight"] @ hi
            act = np.array([g / (1 + math.exp(-g)) for g in gate]) * up
            x[i] = xi + w[p + "ffn_down.weight"] @ act
    head = w["token_embd.weight"] if config.tied_embeddings else w["output.weight"]
    return np.stack([head @ rmsnorm(xi, w["output_norm.weight"]) for xi in x])


IDS = [[3, 17, 60, 0, 42, 17, 9, 33, 5, 21], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]


@pytest.mark.parametrize("tied", [False, True])
def test_forward_equals_float64_reference(tied: bool) -> None:
    config = Qwen2Config(**{**CONFIG.__dict__, "tied_embeddings": tied})
    weights = random_weights(config, seed=1)
    expected = np.stack([reference_logits(config, weights, ids) for ids in IDS])
    tensors = {n: TensorData(n, "F32", w.shape, torch.from_numpy(w).float().view(torch.uint8).reshape(*w.shape[:-1], -1)) for n, w in weights.items()}
    model64 = build_model(config, tensors, dtype=torch.float64)
    # float64 parameters from float32-rounded weights: compare with the reference on the same rounded weights
    rounded = {n: w.astype(np.float32).astype(np.float64) for n, w in weights.items()}
    expected_rounded = np.stack([reference_logits(config, rounded, ids) for ids in IDS])
    logits64 = model64(torch.tensor(IDS)).detach().numpy()
    assert logits64.shape == (2, len(IDS[0]), config.vocab_size)
    np.testing.assert_allclose(logits64, expected_rounded, rtol=0, atol=1e-10)
    model32 = build_model(config, tensors, dtype=torch.float32)
    logits32 = model32(torch.tensor(IDS)).detach().double().numpy()
    scale = np.abs(expected).max()
    assert np.abs(logits32 - expected).max() < 2e-5 * scale
    assert np.abs(expected).max() > 1.0  # the logits are not trivially small


def test_bf16_forward_is_close() -> None:
    weights = random_weights(CONFIG, seed=2)
    expected = reference_logits(CONFIG, weights, IDS[0])
    model = build_model(CONFIG, as_tensors(weights), dtype=torch.bfloat16)
    got = model(torch.tensor([IDS[0]])).detach().double().numpy()[0]
    cosine = (got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected)
    assert cosine > 0.999, cosine


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "Q6_K"])
def test_quantlinear_model_equals_dense_model_of_the_same_blocks(qtype: str) -> None:
    config = Qwen2Config(vocab_size=40, hidden_size=256, n_layers=1, n_heads=4, n_kv_heads=1, ffn_size=256,
                         tied_embeddings=True)
    tensors = as_tensors(random_weights(config, seed=3), qtype)
    dense = build_model(config, tensors, dtype=torch.float32)
    native = build_model(config, tensors, dtype=torch.float32, keep_quantized=True)
    assert isinstance(native.token_embd, QuantLinear) and isinstance(native.blocks[0].mlp.down, QuantLinear)
    assert not any(isinstance(m, QuantLinear) for m in dense.modules())
    ids = torch.tensor([[1, 39, 7, 7, 0]])
    torch.testing.assert_close(native(ids), dense(ids), rtol=1e-6, atol=1e-6)
    quant_bytes = sum(b.numel() for b in native.buffers())
    assert quant_bytes == sum(t.nbytes for t in tensors.values() if t.qtype == qtype)


def test_missing_and_misshapen_tensors_are_named() -> None:
    tensors = as_tensors(random_weights(CONFIG, seed=4))
    del tensors["blk.1.ffn_up.weight"]
    bad = tensors["blk.0.attn_k.bias"]
    tensors["blk.0.attn_k.bias"] = TensorData(bad.name, "F32", (8,), bad.raw[:32])
    with pytest.raises(DistillError) as err:
        build_model(CONFIG, tensors)
    assert "tensor 'blk.0.attn_k.bias' has shape (8,), expected (16,)" in str(err.value)
    assert "tensor 'blk.1.ffn_up.weight' is missing (expected shape (48, 32))" in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"n_heads": 5}, "must split into 5 heads"),
    ({"n_kv_heads": 3}, "not a multiple of n_kv_heads 3"),
    ({"vocab_size": 0}, "vocab_size must be a positive integer"),
])
def test_inconsistent_config_is_refused(change: dict, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        Qwen2Config(**{**CONFIG.__dict__, **change})

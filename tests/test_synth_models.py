"""Random shape-faithful models: presets, quantization mixes, sampled blocks, files, the make-model command."""

from __future__ import annotations

import dataclasses
import io
import re
import sys
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from distill.errors import DistillError
from distill.qwen2_gguf import read_gguf
from distill.tokenizer import read_tokenizer
from distill.synth import PRESETS, QUANTS, make_model, make_model_file, random_blocks, synth_tensors, tensor_type
from pv.cli import main
from distill.commands import make_model as make_model_command


def test_presets_have_the_published_qwen25_shapes() -> None:
    # Hugging Face configs of Qwen2.5-Coder 0.5B and 7B (hidden, layers, heads, kv heads, ffn, vocab, tied)
    small, large = PRESETS["qwen2.5-coder-0.5b"], PRESETS["qwen2.5-coder-7b"]
    assert (small.hidden_size, small.n_layers, small.n_heads, small.n_kv_heads, small.head_dim, small.ffn_size,
            small.vocab_size, small.tied_embeddings) == (896, 24, 14, 2, 64, 4864, 151936, True)
    assert (large.hidden_size, large.n_layers, large.n_heads, large.n_kv_heads, large.head_dim, large.ffn_size,
            large.vocab_size, large.tied_embeddings) == (3584, 28, 28, 4, 128, 18944, 152064, False)
    for config in PRESETS.values():
        assert (config.rms_eps, config.rope_theta) == (1e-6, 1e6)
    tiny = PRESETS["tiny"]
    assert tiny.n_heads > tiny.n_kv_heads and tiny.hidden_size % 256 == 0 and tiny.tied_embeddings


def test_command_lists_match_the_library() -> None:
    assert make_model_command.PRESET_NAMES == tuple(PRESETS)
    assert make_model_command.QUANT_NAMES == QUANTS


def test_q4_k_m_follows_llama_cpp_rules_on_the_05b_shape() -> None:
    config = PRESETS["qwen2.5-coder-0.5b"]
    types = {name: tensor_type(config, name, shape, "q4_k_m") for name, shape in config.tensor_shapes().items()}
    # llama.cpp gives attn_v/ffn_down more bits in layers i < n/8, i >= 7n/8, (i - n/8) % 3 == 2; for n = 24:
    more_bits = [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]
    for layer in range(24):
        down, v = types[f"blk.{layer}.ffn_down.weight"], types[f"blk.{layer}.attn_v.weight"]
        assert down == ("Q6_K" if layer in more_bits else "Q4_K")  # rows of 4864 = 19 x 256
        assert v == ("Q8_0" if layer in more_bits else "Q5_0")  # rows of 896: K-quant fallbacks
        assert types[f"blk.{layer}.ffn_up.weight"] == "Q5_0"
        assert types[f"blk.{layer}.attn_q.bias"] == "F32"
    assert types["token_embd.weight"] == "Q8_0"  # tied: the embedding is the head, Q6_K -> Q8_0 fallback
    assert "output.weight" not in types


def test_q4_k_m_on_the_7b_shape_uses_k_quants_only() -> None:
    config = PRESETS["qwen2.5-coder-7b"]
    types = Counter(tensor_type(config, n, s, "q4_k_m") for n, s in config.tensor_shapes().items())
    assert types["Q5_0"] == types["Q8_0"] == 0
    assert tensor_type(config, "output.weight", (152064, 3584), "q4_k_m") == "Q6_K"
    assert tensor_type(config, "token_embd.weight", (152064, 3584), "q4_k_m") == "Q4_K"
    # n = 28: layers 0-2, 24-27 and 5, 8, ..., 23 get more bits: 14 layers x (attn_v, ffn_down) + output
    assert types["Q6_K"] == 1 + 2 * 14 and types["F32"] == 28 * 5 + 1


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q8_0", "Q5_0"])
def test_sampled_blocks_are_valid_with_the_requested_scale(qtype: str) -> None:
    gen = torch.Generator().manual_seed(0)
    raw = random_blocks(qtype, (128, 2048), 0.03, gen, torch.device("cpu"))
    weights = gguf.quants.dequantize(raw.numpy(), gguf.GGMLQuantizationType[qtype])  # the independent reader
    assert np.isfinite(weights).all()
    assert abs(weights.std() / 0.03 - 1) < 0.1
    assert abs(weights.mean()) < 0.05 * 0.03


@pytest.mark.parametrize("quant", QUANTS)
def test_tiny_model_forward_is_finite(quant: str) -> None:
    config = PRESETS["tiny"]
    logits = make_model(config, quant, seed=4)(torch.tensor([[0, 5, 900, 17, 17, 3]])).detach()
    assert logits.shape == (1, 6, config.vocab_size) and torch.isfinite(logits).all()
    assert 0.3 < float(logits.std()) < 5  # logits neither vanishing nor exploding


def test_weights_depend_on_the_seed_only() -> None:
    config = dataclasses.replace(PRESETS["tiny"], n_layers=1)
    a, b, c = (list(synth_tensors(config, "q4_k_m", seed)) for seed in (4, 4, 5))
    assert all(torch.equal(x.raw, y.raw) for x, y in zip(a, b))
    assert not any(torch.equal(x.raw, z.raw) for x, z in zip(a, c) if x.name.endswith("weight"))


@pytest.mark.slow
def test_05b_shape_activations_stay_finite_through_every_layer() -> None:
    config = dataclasses.replace(PRESETS["qwen2.5-coder-0.5b"], vocab_size=2048)
    model = make_model(config, "q4_k", seed=1, keep_quantized=True)
    norms = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: norms.append(float(out.float().pow(2).mean().sqrt())))
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]]))
    assert len(norms) == 24 and all(np.isfinite(norms)) and max(norms) < 100
    assert torch.isfinite(logits).all() and 0.3 < float(logits.std()) < 5


def test_model_file_pads_a_real_vocabulary(tmp_path: Path, vocab_dir: Path) -> None:
    vocab = vocab_dir / "ggml-vocab-gpt-neox.gguf"
    path = make_model_file(tmp_path / "m.gguf", "tiny", "q4_k_m", vocab, seed=3, vocab_rows=50432 + 96)
    model = read_gguf(path)
    source = read_tokenizer(vocab)
    tok = model.tokenizer
    assert model.config.vocab_size == len(tok.tokens) == 50528
    assert tok.tokens[:50432] == source.tokens and tok.merges == source.merges
    assert tok.tokens[50432:] == [f"[PAD{i}]" for i in range(50432, 50528)]
    assert tok.token_types[50432:] == [int(gguf.TokenType.UNUSED)] * 96
    assert tok.token_types[:50432] == source.token_types and tok.extra == source.extra
    assert {t.qtype for t in model.tensors.values()} == {"F32", "Q4_K", "Q6_K"}


def test_model_file_without_vocabulary_uses_placeholders(tmp_path: Path) -> None:
    path = make_model_file(tmp_path / "p.gguf", "tiny", "f32", None, seed=3, vocab_rows=40)
    tok = read_gguf(path).tokenizer
    assert tok.tokens == [f"[PAD{i}]" for i in range(40)]


@pytest.mark.parametrize("args, message", [
    (("nope", "f32", None, 1), "unknown preset 'nope'; known: tiny, qwen2.5-coder-0.5b, qwen2.5-coder-7b"),
    (("tiny", "q3_k", None, 1), "unknown quantization 'q3_k'; known: f32, bf16, q4_k, q4_k_m"),
])
def test_bad_arguments_leave_no_file(tmp_path: Path, args, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        make_model_file(tmp_path / "x.gguf", *args)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_model(tmp_path: Path, vocab_dir: Path, capsys) -> None:
    out = tmp_path / "cli.gguf"
    code = main(["make-model", "--preset", "tiny", "--quant", "q4_k", "--vocab", str(vocab_dir / "ggml-vocab-mpt.gguf"),
                 "--seed", "2", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().out
    assert read_gguf(out).config.vocab_size == 50432


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_shows_tensor_progress_on_a_terminal(tmp_path: Path, vocab_dir: Path, monkeypatch, capsys) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(vocab_dir / "ggml-vocab-mpt.gguf"),
                 "-o", str(tmp_path / "p.gguf")])
    assert code == 0
    total = len(PRESETS["tiny"].tensor_shapes())
    shown = terminal.getvalue()
    assert "pv make-model: tensors [" in shown and f"1/{total}" in shown and f"{total}/{total}" in shown
    assert "wrote " in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--vocab-rows", "100"], r"ggml-vocab-mpt\.gguf: 100 embedding rows cannot hold the vocabulary's 50432 tokens"),
    (["--vocab-rows", "0"], r"--vocab-rows 0: must be a positive integer"),
])
def test_cli_errors_are_one_line_and_leave_no_file(tmp_path: Path, vocab_dir: Path, capsys, extra, message) -> None:
    out = tmp_path / "bad.gguf"
    code = main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(vocab_dir / "ggml-vocab-mpt.gguf"),
                 "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pv make-model: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_cli_names_a_bad_vocabulary_file(tmp_path: Path, capsys) -> None:
    fake = tmp_path / "vocab.gguf"
    fake.write_bytes(b"not gguf at all")
    code = main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(fake), "-o", str(tmp_path / "o.gguf")])
    assert code == 2
    assert f"pv make-model: error: {fake}: not a GGUF file: magic is b'not ', expected b'GGUF'" in capsys.readouterr().err
    missing = tmp_path / "missing.gguf"
    assert main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(missing), "-o", str(tmp_path / "o.gguf")]) == 2
    assert f"--vocab {missing}: no such file" in capsys.readouterr().err
    assert main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(tmp_path), "-o", str(tmp_path / "o.gguf")]) == 2
    assert f"--vocab {tmp_path}: is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.gguf"]

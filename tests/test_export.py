"""The student out of a run: student-trained.gguf read back by gguf's reader and ours, its metadata, its
Q4_K_M bytes against llama.cpp's quantizer, and config.json + model.safetensors loaded by transformers.

References: gguf's ``GGUFReader`` and dequantizer, safetensors' reader, torch's own rounding to bf16,
libgguf (llama.cpp's quantizer) and transformers' ``Qwen2ForCausalLM``; never the export code itself.
Names and numbers are llama.cpp's and transformers', spelled out here.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import gguf
import libgguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distill.commands.distill import add_arguments
from distill.errors import DistillError
from distill.export import STUDENT_FORMATS, export_student, write_student_gguf
from distill.model import build_model
from distill.qwen2_gguf import read_gguf, write_gguf
from distill.synth import PRESETS, synth_tensors
from distill.tokenizer import Tokenizer
from distill.train import DistillConfig, run_distillation

#: llama.cpp's llama_ftype values (llama.h)
ALL_F32, MOSTLY_F16, MOSTLY_Q4_K_M, MOSTLY_BF16 = 0, 1, 15, 32
#: GGUF name (after blk.N.) -> distill.model.Qwen2's parameter name (after blocks.N.), as student.safetensors has it
MODULE_NAMES = {
    "attn_norm.weight": "attn_norm.weight", "attn_q.weight": "attn.q.weight", "attn_q.bias": "attn.q.bias",
    "attn_k.weight": "attn.k.weight", "attn_k.bias": "attn.k.bias", "attn_v.weight": "attn.v.weight",
    "attn_v.bias": "attn.v.bias", "attn_output.weight": "attn.o.weight", "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "mlp.gate.weight", "ffn_up.weight": "mlp.up.weight", "ffn_down.weight": "mlp.down.weight",
}


def module_name(gguf_name: str) -> str:
    if gguf_name.startswith("blk."):
        _, layer, rest = gguf_name.split(".", 2)
        return f"blocks.{layer}.{MODULE_NAMES[rest]}"
    return gguf_name


def gguf_weights(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file as float32 in torch order, by gguf's reader and dequantizer."""
    reader = gguf.GGUFReader(path)
    return {t.name: gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
            for t in reader.tensors}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run of the tiny preset pair, with the default student format."""
    out = tmp_path_factory.mktemp("export") / "run"
    result = run_distillation(DistillConfig(out_dir=out, preset_pair="tiny", steps=3, batch=1, seq=16), echo=lambda _: None)
    assert result.status == "completed"
    return out


def test_the_run_writes_its_trained_student_as_bf16_gguf(run_dir: Path) -> None:
    fields = gguf.GGUFReader(run_dir / "student-trained.gguf").fields
    assert fields["general.file_type"].contents() == MOSTLY_BF16
    assert fields["general.quantization_version"].contents() == 2
    trained = load_file(run_dir / "student.safetensors")
    initial = gguf_weights(run_dir / "student.gguf")
    written = gguf_weights(run_dir / "student-trained.gguf")
    assert sorted(written) == sorted(initial) and len(written) == len(trained)
    for name, values in written.items():
        want = trained[module_name(name)].to(torch.bfloat16 if values.ndim == 2 else torch.float32).float().numpy()
        np.testing.assert_array_equal(values, want, err_msg=name)
        if values.ndim == 2:  # a matrix moved by training: most of its bf16 weights are not the initial ones
            start = torch.from_numpy(initial[name]).to(torch.bfloat16).float().numpy()
            assert (values != start).mean() > 0.5, name


def test_our_reader_loads_the_trained_student_with_the_starting_tokenizer(run_dir: Path) -> None:
    start, trained = read_gguf(run_dir / "student.gguf"), read_gguf(run_dir / "student-trained.gguf")
    assert trained.config == start.config
    assert trained.tokenizer == start.tokenizer
    model = build_model(trained.config, trained.tensors)
    reference = build_model(start.config, start.tensors)
    reference.load_state_dict({k: v.to(torch.bfloat16 if v.dim() == 2 else torch.float32).float()
                               for k, v in load_file(run_dir / "student.safetensors").items()})
    ids = torch.randint(0, trained.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids), reference(ids))


def test_transformers_loads_config_json_and_model_safetensors(run_dir: Path) -> None:
    import transformers  # the test extra (imported here: it takes seconds); missing, the test fails
    hf = transformers.AutoModelForCausalLM.from_pretrained(run_dir)
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    start = read_gguf(run_dir / "student.gguf")
    ours = build_model(start.config, start.tensors)
    ours.load_state_dict(load_file(run_dir / "student.safetensors"))
    ids = torch.randint(0, start.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=1e-5, atol=1e-5)


# -- metadata and formats, on a source file with the keys a converted Qwen2.5 carries -----------------

CONFIG = dataclasses.replace(PRESETS["tiny"], vocab_size=256, ffn_size=256, tied_embeddings=False, n_layers=8)
CHAT_TEMPLATE = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokens = [f"t{i}" for i in range(CONFIG.vocab_size)]
    extra = {"tokenizer.ggml.eos_token_id": 7, "tokenizer.ggml.add_bos_token": False, "tokenizer.chat_template": CHAT_TEMPLATE,
             "tokenizer.ggml.scores": np.linspace(0, -1, CONFIG.vocab_size, dtype=np.float32)}
    tokenizer = Tokenizer("gpt2", "qwen2", tokens, [1] * len(tokens), ["t1 t2", "t3 t4"], extra)
    path = tmp_path_factory.mktemp("source") / "source.gguf"
    write_gguf(path, CONFIG, synth_tensors(CONFIG, "q4_k_m", seed=4), tokenizer,
               metadata={"general.name": ("Tiny Student", gguf.GGUFValueType.STRING, None),
                         "qwen2.rope.dimension_count": (64, gguf.GGUFValueType.UINT32, None)})
    return path


@pytest.fixture(scope="module")
def trained(source: Path) -> torch.nn.Module:
    """The source model with every weight moved, as training moves it."""
    model = read_gguf(source)
    student = build_model(model.config, model.tensors)
    with torch.no_grad():
        for i, parameter in enumerate(student.parameters()):
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(i)))
    return student


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, source: Path, trained) -> dict[str, Path]:
    """The trained student written in every format."""
    folder = tmp_path_factory.mktemp("formats")
    return {name: write_student_gguf(folder / f"{name}.gguf", trained, source, name) for name in ("bf16", "f16", "f32", "q4_k_m")}


@pytest.mark.parametrize("student_format, file_type", [("bf16", MOSTLY_BF16), ("f16", MOSTLY_F16), ("f32", ALL_F32),
                                                      ("q4_k_m", MOSTLY_Q4_K_M)])
def test_every_source_key_is_kept_and_the_file_type_is_llama_cpp_s(source: Path, written: dict[str, Path],
                                                                   student_format: str, file_type: int) -> None:
    path = written[student_format]
    before = gguf.GGUFReader(source).fields
    after = gguf.GGUFReader(path).fields
    for key, field in before.items():
        if key.startswith("GGUF.") or key in ("general.file_type",):
            continue
        assert after[key].types == field.types, key
        assert after[key].contents() == field.contents(), key
    assert after["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    assert after["general.file_type"].contents() == file_type
    assert after["general.quantization_version"].contents() == 2
    assert before["general.file_type"].contents() == MOSTLY_Q4_K_M  # the source's own type is not copied over


def test_q4_k_m_holds_llama_cpp_s_bytes_of_the_trained_weights(written: dict[str, Path], trained) -> None:
    path = written["q4_k_m"]
    weights = trained.state_dict()
    types = {}
    for tensor in gguf.GGUFReader(path).tensors:
        types[tensor.name] = tensor.tensor_type.name
        values = weights[module_name(tensor.name)]
        if tensor.tensor_type.name == "F32":
            np.testing.assert_array_equal(np.asarray(tensor.data).reshape(values.shape), values.numpy())
            continue
        want = np.asarray(libgguf.quantize_rows(np.ascontiguousarray(values.numpy()), tensor.tensor_type), dtype=np.uint8)
        assert np.array_equal(np.asarray(tensor.data).reshape(-1).view(np.uint8), want.reshape(-1)), tensor.name
    # llama.cpp's Q4_K_M mix for 8 layers: Q6_K head; attn_v and ffn_down in Q6_K for layers 0, 3, 6, 7
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    assert [i for i in range(8) if types[f"blk.{i}.attn_v.weight"] == "Q6_K"] == [0, 3, 6, 7]
    assert [i for i in range(8) if types[f"blk.{i}.ffn_down.weight"] == "Q6_K"] == [0, 3, 6, 7]
    assert types["blk.1.attn_q.weight"] == "Q4_K" and types["blk.1.attn_norm.weight"] == "F32"


def test_weights_beyond_f16_are_refused_by_name_and_nothing_is_written(tmp_path: Path, source: Path, trained) -> None:
    # a copy: the module's `trained` is shared, and float32's (w + 1e5) - 1e5 is not w (the q4_k_m test,
    # run after this one in a random order, then found blk.1.ffn_up.weight differing from its file)
    beyond = copy.deepcopy(trained)
    with torch.no_grad():
        beyond.blocks[1].mlp.up.weight[0, 0] += 1e5
    with pytest.raises(DistillError, match=r"cannot write tensor 'blk\.1\.ffn_up\.weight' as F16: .*--student-format bf16"):
        export_student(beyond, tmp_path, source, "f16")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_student_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match=r"unknown student format 'q4_0'; known: bf16, f16, f32, q4_k_m"):
        run_distillation(DistillConfig(out_dir=tmp_path / "run", preset_pair="tiny", student_format="q4_0"))
    assert not (tmp_path / "run").exists()


def test_the_cli_offers_every_student_format() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    action = next(a for a in parser._actions if "--student-format" in a.option_strings)
    assert tuple(action.choices) == ("bf16", "f16", "f32", "q4_k_m") == tuple(STUDENT_FORMATS)
    assert parser.parse_args(["--student-format", "q4_k_m"]).student_format == "q4_k_m"

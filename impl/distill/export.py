"""The trained student out of a run, in the formats people run and load it with.

- ``student-trained.gguf`` for llama.cpp (and ``pv eval``): the student's weights in one of
  ``STUDENT_FORMATS``, with every metadata key of the student GGUF the run started
  from (tokenizer lists, ``tokenizer.chat_template``, special tokens, ``general.*``
  and the architecture's keys), except those that describe the tensors, which are
  set anew: ``general.file_type`` (llama.cpp's ``llama_ftype``) and
  ``general.quantization_version``. Q4_K_M is llama.cpp's mix (Q4_K, Q6_K for the
  head and for ``attn_v``/``ffn_down`` of the layers given more bits, Q5_0/Q8_0 for
  rows not a multiple of 256), quantized by ``distill.quant``, whose bytes are those
  of llama.cpp's reference quantizer.
- ``config.json`` and ``model.safetensors`` for Hugging Face transformers
  (``Qwen2ForCausalLM``, ``AutoModelForCausalLM.from_pretrained(run_dir)``): the
  same weights as ``student.safetensors`` under transformers' names, in the
  student's training dtype. ``student.safetensors`` keeps distill's own names
  (resume and ``pv eval`` read it).

The default GGUF format is BF16: the format Qwen2.5's own weights are published in
and the one llama.cpp's converter picks for them, with the exponent range of the
float32 training weights, so no trained weight can overflow to Inf or flush to
zero as it can in F16 (65504 at most, subnormal below 6e-5). F16 (three more
mantissa bits, for backends without BF16) and Q4_K_M are one option away.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from gguf.constants import LlamaFileType

from distill.errors import DistillError
from distill.gguf_file import read_header
from distill.model import Qwen2, Qwen2Config
from distill.output import whole_file
from distill.quant import TensorData, quantize
from distill.qwen2_gguf import ARCHITECTURE, CONFIG_KEYS, MetadataValue, write_gguf
from distill.synth import tensor_type

GGUF_FILE = "student-trained.gguf"  # a preset pair's run folder holds the starting student.gguf
HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
#: --student-format -> llama.cpp's file type of the GGUF written
STUDENT_FORMATS: dict[str, LlamaFileType] = {
    "bf16": LlamaFileType.MOSTLY_BF16,
    "f16": LlamaFileType.MOSTLY_F16,
    "f32": LlamaFileType.ALL_F32,
    "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M,
}
DEFAULT_STUDENT_FORMAT = "bf16"
#: metadata keys of the source file that describe its tensors or are set by the writer: not copied
_NOT_COPIED = frozenset({"general.architecture", "general.alignment", "general.file_type",
                         "general.quantization_version",
                         *(template.format(arch=ARCHITECTURE) for template, _ in CONFIG_KEYS.values())})
EXPORT_FILES = (GGUF_FILE, HF_CONFIG_FILE, HF_WEIGHTS_FILE)
#: GGUF tensor name (after ``blk.N.``) -> transformers' Qwen2 name (after ``model.layers.N.``)
_HF_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_HF_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
_HF_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def check_student_format(name: str) -> None:
    """Refuse a GGUF format that is not one of ``STUDENT_FORMATS``."""
    if name not in STUDENT_FORMATS:
        raise DistillError(f"unknown student format {name!r}; known: {', '.join(STUDENT_FORMATS)}")


def student_weights(student: Qwen2) -> dict[str, torch.Tensor]:
    """The student's parameters by GGUF tensor name, in file order (the module's own tensors)."""
    weights = {"token_embd.weight": student.token_embd.weight}
    for i, block in enumerate(student.blocks):
        p, attn, mlp = f"blk.{i}.", block.attn, block.mlp
        weights[p + "attn_norm.weight"] = block.attn_norm.weight
        for short, layer in (("q", attn.q), ("k", attn.k), ("v", attn.v)):
            weights[p + f"attn_{short}.weight"], weights[p + f"attn_{short}.bias"] = layer.weight, layer.bias
        weights[p + "attn_output.weight"] = attn.o.weight
        weights[p + "ffn_norm.weight"] = block.ffn_norm.weight
        for short, layer in (("gate", mlp.gate), ("up", mlp.up), ("down", mlp.down)):
            weights[p + f"ffn_{short}.weight"] = layer.weight
    weights["output_norm.weight"] = student.output_norm.weight
    if student.output is not None:
        weights["output.weight"] = student.output.weight
    return weights


def gguf_tensor_type(config: Qwen2Config, name: str, shape: tuple[int, ...], student_format: str) -> str:
    """The storage type of tensor ``name`` in ``student_format`` (1-D tensors stay F32, as llama.cpp keeps them)."""
    check_student_format(student_format)
    if len(shape) == 1 or student_format == "f32":
        return "F32"
    if student_format == "q4_k_m":
        return tensor_type(config, name, shape, "q4_k_m")
    return student_format.upper()


def _stored(name: str, values: torch.Tensor, qtype: str) -> TensorData:
    values = values.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(values).all()):
        raise DistillError(f"cannot write the student: tensor {name!r} has NaN or Inf weights")
    raw = quantize(values, qtype)
    if qtype == "F16" and not bool(torch.isfinite(raw.view(torch.float16)).all()):
        raise DistillError(f"cannot write tensor {name!r} as F16: weights beyond its range (65504); "
                           "use --student-format bf16")
    return TensorData(name, qtype, tuple(values.shape), raw)


def _gguf_tensors(student: Qwen2, student_format: str) -> Iterator[TensorData]:
    """The student's tensors in ``student_format``, one at a time (memory holds one quantized tensor)."""
    for name, values in student_weights(student).items():
        yield _stored(name, values, gguf_tensor_type(student.config, name, tuple(values.shape), student_format))


def source_metadata(source: Path) -> dict[str, MetadataValue]:
    """The metadata of the GGUF ``source`` to copy into the student's file, with its GGUF types."""
    header = read_header(source)
    return {key: (value, *header.value_types[key]) for key, value in header.metadata.items() if key not in _NOT_COPIED}


def write_student_gguf(path: Path, student: Qwen2, source: Path, student_format: str = DEFAULT_STUDENT_FORMAT) -> Path:
    """Write ``student`` as a GGUF file at ``path`` (atomically), with the metadata of ``source``."""
    check_student_format(student_format)
    write_gguf(path, student.config, _gguf_tensors(student, student_format), None,
               file_type=STUDENT_FORMATS[student_format], metadata=source_metadata(source))
    return path


def hf_name(gguf_name: str) -> str:
    """transformers' Qwen2 name of a GGUF tensor name."""
    if gguf_name.startswith("blk."):
        _, layer, rest = gguf_name.split(".", 2)
        return f"model.layers.{layer}.{_HF_BLOCK_NAMES[rest]}"
    return _HF_NAMES[gguf_name]


def hf_config(config: Qwen2Config, metadata: dict[str, MetadataValue], dtype: torch.dtype) -> dict[str, Any]:
    """transformers' ``config.json`` of a Qwen2 of shape ``config`` (special tokens from the GGUF metadata)."""
    special = {name: metadata[f"tokenizer.ggml.{name}"][0] for name in ("bos_token_id", "eos_token_id")
               if f"tokenizer.ggml.{name}" in metadata}
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.ffn_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.rms_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tied_embeddings,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": config.n_layers,
        "torch_dtype": _HF_DTYPES[dtype],
        **special,
    }


def write_hf(out_dir: Path, student: Qwen2, source: Path) -> tuple[Path, Path]:
    """Write ``config.json`` and ``model.safetensors`` (transformers' names) into ``out_dir``, atomically each."""
    from safetensors.torch import save_file

    weights = {hf_name(name): values.detach().cpu().contiguous() for name, values in student_weights(student).items()}
    dtype = next(iter(weights.values())).dtype
    config = hf_config(student.config, source_metadata(source), dtype)
    weights_path, config_path = out_dir / HF_WEIGHTS_FILE, out_dir / HF_CONFIG_FILE
    with whole_file(weights_path) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    with whole_file(config_path) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config_path, weights_path


def export_student(student: Qwen2, out_dir: Path, source: Path, student_format: str = DEFAULT_STUDENT_FORMAT) -> list[Path]:
    """Write the student of a finished run into ``out_dir``: ``student-trained.gguf`` (``student_format``, metadata
    of ``source``), ``config.json`` and ``model.safetensors``; return their paths."""
    out_dir = Path(out_dir)
    gguf_path = write_student_gguf(out_dir / GGUF_FILE, student, Path(source), student_format)
    return [gguf_path, *write_hf(out_dir, student, Path(source))]


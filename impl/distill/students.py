"""Students as a run writes them and an evaluation reads them, and the checks a checkpoint must pass.

A student is a Qwen2 GGUF file, or a safetensors file of ``distill.model.Qwen2``
parameters (what a run writes as ``student.safetensors``) with its config: a
Hugging Face Qwen2 ``config.json`` beside it, or a GGUF file given as the config
source (the student the run started from), which also gives the tokenizer.

A checkpoint that cannot be what it claims is rejected with the reason named
(:class:`~distill.errors.CheckpointRejected`): a file that does not read
(truncated, foreign), tensors missing, unexpected or of other shapes than the
config's, NaN or Inf weights, a weight matrix whose entries are all equal (all
zero, say). A missing file is an input error (:class:`~distill.errors.DistillError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.errors import CheckpointRejected, DistillError
from distill.model import Qwen2, Qwen2Config, build_model
from distill.quant import TensorData, raw_shape
from distill.qwen2_gguf import read_gguf
from distill.tokenizer import Tokenizer

#: Hugging Face Qwen2 config.json key -> Qwen2Config field
HF_CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "intermediate_size": "ffn_size",
    "rms_norm_eps": "rms_eps",
    "rope_theta": "rope_theta",
    "max_position_embeddings": "context_length",
    "tie_word_embeddings": "tied_embeddings",
}
HF_CONFIG_FILE = "config.json"


@dataclass
class Student:
    """A student ready to evaluate: its file, config, tokenizer (None from a config.json) and model (f32, CPU)."""

    path: Path
    config: Qwen2Config
    tokenizer: Tokenizer | None
    model: Qwen2


def _require_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise DistillError(f"{path}: {what} not found (or not a regular file)")


def hf_config(path: Path) -> Qwen2Config:
    """The Qwen2Config of a Hugging Face Qwen2 ``config.json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DistillError(f"{path}: not a readable config.json: {err}") from None
    if not isinstance(data, dict) or data.get("model_type") != "qwen2":
        raise DistillError(f"{path}: not a Qwen2 config (model_type {data.get('model_type') if isinstance(data, dict) else None!r})")
    missing = [key for key in HF_CONFIG_KEYS if key not in data]
    if missing:
        raise DistillError(f"{path}: config.json lacks {', '.join(missing)}")
    try:
        return Qwen2Config(**{field: data[key] for key, field in HF_CONFIG_KEYS.items()})
    except (DistillError, TypeError) as err:
        raise DistillError(f"{path}: {err}") from None


def _empty_model(config: Qwen2Config) -> Qwen2:
    """A Qwen2 of ``config`` whose parameters are on the meta device (no memory), to be assigned."""
    tensors = {name: TensorData(name, "F32", shape, torch.empty(raw_shape(shape, "F32"), dtype=torch.uint8,
                                                                device="meta"))
               for name, shape in config.tensor_shapes().items()}
    return build_model(config, tensors, device="meta")


def load_student(path: Path, config_source: Path | None = None) -> Student:
    """Read a student (see the module docstring); ``config_source`` is a GGUF file or a config.json.

    Raises DistillError for a missing file or an unusable config source,
    CheckpointRejected for a student file that does not fit or does not read.
    """
    path = Path(path)
    _require_file(path, "student")
    if path.suffix != ".safetensors":
        try:
            gguf = read_gguf(path)
            model = build_model(gguf.config, gguf.tensors, dtype=torch.float32)
        except DistillError as err:
            raise CheckpointRejected(f"student {err}") from None
        return Student(path, gguf.config, gguf.tokenizer, model)
    source = Path(config_source) if config_source is not None else path.with_name(HF_CONFIG_FILE)
    _require_file(source, f"config of the student {path} (give a GGUF file or a config.json)")
    tokenizer = None
    if source.suffix == ".json":
        config = hf_config(source)
    else:
        gguf = read_gguf(source)
        config, tokenizer = gguf.config, gguf.tokenizer
    model = _empty_model(config)
    state = _read_safetensors(path)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        problems = " ".join(str(err).split("\n")[1:]).split()
        raise CheckpointRejected(f"student {path} does not fit the config of {source}: {' '.join(problems)}") from None
    return Student(path, config, tokenizer, model)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error types for a truncated or foreign file
        raise CheckpointRejected(f"student {path} does not read as safetensors (truncated or not safetensors): "
                                 f"{type(err).__name__}: {err}") from None
    return {name: tensor.to(torch.float32) for name, tensor in state.items()}


def weight_problems(model: torch.nn.Module) -> list[str]:
    """What makes a model's weights unusable: NaN or Inf entries, a weight matrix with all entries equal."""
    problems = []
    for name, tensor in model.state_dict().items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            problems.append(f"tensor {name!r} has {bad} NaN or Inf weight(s) of {tensor.numel()}")
        elif tensor.dim() == 2 and bool((tensor == tensor.reshape(-1)[0]).all()):
            problems.append(f"weight matrix {name!r} is constant (every entry {float(tensor.reshape(-1)[0]):g})")
    return problems


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold exactly the same parameters (names, shapes and values)."""
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(
        first[k].shape == second[k].shape and torch.equal(first[k].to(second[k].dtype), second[k]) for k in first)


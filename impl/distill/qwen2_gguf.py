"""Qwen2 models as GGUF files: the metadata keys and tensor names of a Qwen2 checkpoint, in and out.

Tensor data is never copied on reading: tensors are numpy views of a
memory-mapped file. Writing streams the tensors through ``gguf.GGUFWriter``
into a temporary file that replaces the target whole.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gguf
import numpy as np
import torch
from gguf.constants import (
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
)

from distill.errors import DistillError, GGUFFormatError, QuantError
from distill.gguf_file import GGUFHeader, TensorEntry, read_header
from distill.inputs import open_input
from distill.model import Qwen2Config, check_tensors
from distill.output import whole_file
from distill.quant import QTYPES, TensorData, check_scales, raw_shape
from distill.tokenizer import TOKENIZER_PREFIX, Tokenizer, tokenizer_from_metadata

ARCHITECTURE = "qwen2"
#: Largest integer of the ``qwen2.*`` sizes (layers, widths, heads, context).
MAX_DIMENSION = 2**31 - 1
#: Qwen2Config field <- GGUF key (``{arch}`` = qwen2), and the Python type the value must have.
CONFIG_KEYS: dict[str, tuple[str, type]] = {
    "n_layers": ("{arch}.block_count", int),
    "hidden_size": ("{arch}.embedding_length", int),
    "ffn_size": ("{arch}.feed_forward_length", int),
    "context_length": ("{arch}.context_length", int),
    "n_heads": ("{arch}.attention.head_count", int),
    "n_kv_heads": ("{arch}.attention.head_count_kv", int),
    "rms_eps": ("{arch}.attention.layer_norm_rms_epsilon", float),
    "rope_theta": ("{arch}.rope.freq_base", float),
}


@dataclass
class GGUFModel:
    """A Qwen2 GGUF file: its config, its tensors by GGUF name (memory-mapped), its tokenizer.

    A tied model has no ``output.weight``; the model reuses ``token_embd.weight``.
    ``quantized_bytes`` is the size of all tensor data as stored.
    """

    path: Path
    config: Qwen2Config
    tensors: dict[str, TensorData]
    tokenizer: Tokenizer | None
    quantized_bytes: int


def _config_from_metadata(path: Path, metadata: dict[str, Any], vocab_size: int, tied: bool) -> Qwen2Config:
    arch = metadata.get("general.architecture")
    if arch is None:
        raise GGUFFormatError(f"{path}: required metadata key 'general.architecture' is missing")
    if arch != ARCHITECTURE:
        raise GGUFFormatError(
            f"{path}: metadata key 'general.architecture' is {arch!r}: unknown architecture (expected {ARCHITECTURE!r})"
        )
    values: dict[str, Any] = {}
    for field_name, (template, kind) in CONFIG_KEYS.items():
        key = template.format(arch=ARCHITECTURE)
        if key not in metadata:
            raise GGUFFormatError(f"{path}: required metadata key {key!r} is missing")
        value = metadata[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise GGUFFormatError(f"{path}: metadata key {key!r} is {value!r}, expected a {kind.__name__}")
        if kind is int and not 0 < value <= MAX_DIMENSION:
            raise GGUFFormatError(f"{path}: metadata key {key!r} is {value}, expected 1 to {MAX_DIMENSION}")
        if kind is float and not math.isfinite(value):
            raise GGUFFormatError(f"{path}: metadata key {key!r} is {value!r}, expected a finite number")
        # float32 in the file: take the shortest decimal that rounds to it (1e-06, not 9.99999997e-07)
        values[field_name] = float(str(np.float32(value))) if kind is float else value
    try:
        return Qwen2Config(vocab_size=vocab_size, tied_embeddings=tied, **values)
    except DistillError as err:
        raise GGUFFormatError(f"{path}: the qwen2.* metadata is inconsistent: {err}") from None


def _tensor_data(path: Path, header: GGUFHeader, data: np.ndarray, entry: TensorEntry) -> TensorData:
    """The memory-mapped bytes of one tensor, after checking its type, size and position."""
    name = entry.qtype.name
    if name not in QTYPES:
        raise GGUFFormatError(
            f"{path}: tensor {entry.name!r} has type {name}, which is not supported (supported: {', '.join(QTYPES)})"
        )
    shape = tuple(reversed(entry.ggml_shape))
    try:
        nbytes = math.prod(raw_shape(shape, name))
    except QuantError as err:
        raise GGUFFormatError(f"{path}: tensor {entry.name!r} with shape {shape}: {err}") from None
    start = header.data_offset + entry.offset
    if entry.offset % header.alignment:
        raise GGUFFormatError(
            f"{path}: tensor {entry.name!r} starts at data offset {entry.offset}, "
            f"not a multiple of the alignment {header.alignment}"
        )
    if start + nbytes > header.file_size:
        raise GGUFFormatError(
            f"{path}: truncated: tensor {entry.name!r} ({name}, shape {shape}) needs bytes "
            f"{start}..{start + nbytes} but the file has {header.file_size} bytes"
        )
    raw = torch.from_numpy(data[start : start + nbytes]).reshape(raw_shape(shape, name))
    return TensorData(entry.name, name, shape, raw)


def _check_next_offsets(path: Path, header: GGUFHeader, tensors: list[TensorData]) -> None:
    """Tensors must not overlap: each one's bytes end before the next one starts."""
    entries = sorted(header.tensors, key=lambda e: e.offset)
    sizes = {t.name: t.nbytes for t in tensors}
    for a, b in zip(entries, entries[1:]):
        if a.offset + sizes[a.name] > b.offset:
            raise GGUFFormatError(
                f"{path}: tensor {a.name!r} has {sizes[a.name]} bytes at data offset {a.offset}, "
                f"which runs into tensor {b.name!r} at {b.offset}: its byte size does not match its shape and type"
            )


def _check_block_scales(header: GGUFHeader, tensors: list[TensorData], in_memory: bool) -> None:
    """NaN/Inf fp16 scales -> GGUFFormatError naming the tensor and block.

    Each tensor of a mapped file is scanned through its own short-lived mapping, so
    the pages read are released after each tensor instead of staying resident with the model.
    """
    for tensor, entry in zip(tensors, header.tensors):
        if not tensor.nbytes:
            continue
        scan = tensor.raw.reshape(-1).numpy() if in_memory else np.memmap(
            header.path, dtype=np.uint8, mode="c", offset=header.data_offset + entry.offset, shape=(tensor.nbytes,))
        try:
            check_scales(torch.from_numpy(np.asarray(scan)).reshape(tensor.raw.shape), tensor.qtype)
        except QuantError as err:
            raise GGUFFormatError(f"{header.path}: tensor {tensor.name!r}: {err}") from None
        finally:
            del scan


def read_gguf(path: str | Path, *, check_block_scales: bool = True, in_memory: bool = False) -> GGUFModel:
    """Read a Qwen2 GGUF file: config, memory-mapped tensors (``in_memory``: a copy in memory), tokenizer.

    A model that is read while it is used (a quantized teacher) is read ``in_memory``: a
    mapped file that shrinks under the reader would kill the process with SIGBUS.

    Raises GGUFFormatError naming the file, the key or tensor, and what was
    expected, for: a bad magic or version, truncation, an unknown architecture or
    tensor type, missing ``qwen2.*`` keys, a tensor whose byte size does not fit
    its shape and type, and (``check_block_scales``) NaN/Inf fp16 block scales.
    """
    header = read_header(path)
    path = header.path
    if in_memory:
        data = np.empty(header.file_size, np.uint8)
        with open_input(path, "a GGUF file", header.file_size, GGUFFormatError) as fh:
            if fh.readinto(memoryview(data)) != header.file_size:
                raise GGUFFormatError(f"{path}: changed while it was read: fewer than {header.file_size} bytes")
    else:
        data = np.memmap(path, dtype=np.uint8, mode="c") if header.file_size else np.zeros(0, np.uint8)
    tensor_list = [_tensor_data(path, header, data, entry) for entry in header.tensors]
    _check_next_offsets(path, header, tensor_list)
    tensors = {t.name: t for t in tensor_list}

    embd = tensors.get("token_embd.weight")
    if embd is None or len(embd.shape) != 2:
        raise GGUFFormatError(f"{path}: tensor 'token_embd.weight' is missing or not 2-D (expected [vocab, hidden])")
    config = _config_from_metadata(path, header.metadata, embd.shape[0], "output.weight" not in tensors)
    if config.n_layers > len(tensors):
        raise GGUFFormatError(f"{path}: metadata key 'qwen2.block_count' is {config.n_layers}, but the file has"
                              f" only {len(tensors)} tensors")
    problems = check_tensors(config, tensors)
    if problems:
        raise GGUFFormatError(f"{path}: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    if check_block_scales:
        _check_block_scales(header, tensor_list, in_memory)

    tokenizer = None
    if TOKENIZER_PREFIX + "model" in header.metadata:
        tokenizer = tokenizer_from_metadata(path, header.metadata)
        if len(tokenizer.tokens) != config.vocab_size:
            raise GGUFFormatError(
                f"{path}: 'tokenizer.ggml.tokens' has {len(tokenizer.tokens)} tokens, expected one per "
                f"embedding row of 'token_embd.weight' ({config.vocab_size})"
            )
    return GGUFModel(path, config, tensors, tokenizer, sum(t.nbytes for t in tensor_list))


#: The GGUF item type of a numeric metadata array, by numpy dtype (the inverse of the reader's views).
_ARRAY_ITEM_TYPES = {np.dtype(np.uint8): GGUFValueType.UINT8, np.dtype(np.int8): GGUFValueType.INT8,
                     np.dtype("<u2"): GGUFValueType.UINT16, np.dtype("<i2"): GGUFValueType.INT16,
                     np.dtype("<u4"): GGUFValueType.UINT32, np.dtype("<i4"): GGUFValueType.INT32,
                     np.dtype("<f4"): GGUFValueType.FLOAT32, np.dtype(np.bool_): GGUFValueType.BOOL,
                     np.dtype("<u8"): GGUFValueType.UINT64, np.dtype("<i8"): GGUFValueType.INT64,
                     np.dtype("<f8"): GGUFValueType.FLOAT64}
#: llama.cpp's ``llama_ftype`` of a file by the types of its matrices (1-D tensors are F32 in every type);
#: K-quant mixes are named Q4_K_M, as ``llama-quantize`` (also with ``--pure``) names them.
_FILE_TYPES: tuple[tuple[frozenset[str], LlamaFileType], ...] = (
    (frozenset({"F32"}), LlamaFileType.ALL_F32),
    (frozenset({"F16"}), LlamaFileType.MOSTLY_F16),
    (frozenset({"BF16"}), LlamaFileType.MOSTLY_BF16),
    (frozenset({"Q8_0"}), LlamaFileType.MOSTLY_Q8_0),
    (frozenset({"Q4_K", "Q6_K", "Q5_0", "Q8_0"}), LlamaFileType.MOSTLY_Q4_K_M),
)
#: The quantization format version of ggml's blocks, written by llama.cpp's writers (``GGML_QUANT_VERSION``).
QUANTIZATION_VERSION = 2
#: A metadata value with its GGUF type and, for an array, its item type.
MetadataValue = tuple[Any, GGUFValueType, "GGUFValueType | None"]


def llama_file_type(tensors: Iterable[TensorData]) -> LlamaFileType:
    """``general.file_type`` of a file holding ``tensors``: F32 when every tensor is F32, else by the
    types of its matrices (F16, BF16, Q8_0, or a K-quant mix with its fallbacks: Q4_K_M)."""
    matrices = {t.qtype for t in tensors if len(t.shape) > 1}
    everything = {t.qtype for t in tensors}
    if everything <= {"F32"}:
        return LlamaFileType.ALL_F32
    for types, file_type in _FILE_TYPES[1:]:
        if matrices <= types and (file_type != LlamaFileType.MOSTLY_Q4_K_M or matrices & {"Q4_K", "Q5_0"}):
            return file_type
    raise GGUFFormatError(f"cannot name the llama.cpp file type of matrices in {', '.join(sorted(matrices))}")


def _metadata_type(value: Any) -> tuple[GGUFValueType, GGUFValueType | None]:
    """The GGUF type llama.cpp's converters use for a Python value (ids as uint32)."""
    if isinstance(value, np.ndarray):
        item = _ARRAY_ITEM_TYPES.get(value.dtype)
        if value.ndim != 1 or item is None:
            raise GGUFFormatError(f"cannot write a metadata array of shape {value.shape} and type {value.dtype}")
        return GGUFValueType.ARRAY, item
    if isinstance(value, list):
        if not value:
            raise GGUFFormatError("cannot write an empty metadata array")
        return GGUFValueType.ARRAY, _metadata_type(value[0])[0]
    if isinstance(value, bool):
        return GGUFValueType.BOOL, None
    if isinstance(value, int):
        return (GGUFValueType.UINT32 if 0 <= value < 2**32 else GGUFValueType.INT64), None
    if isinstance(value, float):
        return GGUFValueType.FLOAT32, None
    return GGUFValueType.STRING, None


def _add_value(writer: gguf.GGUFWriter, key: str, value: Any, vtype: GGUFValueType, item: GGUFValueType | None) -> None:
    # gguf's writer takes arrays as sequences: numpy views of a file become lists here, one key at a time
    writer.add_key_value(key, value.tolist() if isinstance(value, np.ndarray) else value, vtype, item)


def _add_metadata(writer: gguf.GGUFWriter, config: Qwen2Config, tokenizer: Tokenizer | None, file_type: LlamaFileType,
                  metadata: Mapping[str, MetadataValue]) -> None:
    own: dict[str, MetadataValue] = {"general.architecture": (ARCHITECTURE, GGUFValueType.STRING, None)}
    for field_name, (template, kind) in CONFIG_KEYS.items():
        key = template.format(arch=ARCHITECTURE)
        value = getattr(config, field_name)
        own[key] = (value, GGUFValueType.UINT32 if kind is int else GGUFValueType.FLOAT32, None)
    own["general.file_type"] = (int(file_type), GGUFValueType.UINT32, None)
    own["general.quantization_version"] = (QUANTIZATION_VERSION, GGUFValueType.UINT32, None)
    for key, (value, vtype, item) in list(own.items())[1:]:  # gguf's writer adds general.architecture
        writer.add_key_value(key, value, vtype, item)
    items: dict[str, MetadataValue] = {}
    if tokenizer is not None:
        fields: dict[str, Any] = {
            "model": tokenizer.model, "pre": tokenizer.pre, "tokens": tokenizer.tokens,
            "token_type": tokenizer.token_types, "merges": tokenizer.merges,
        }
        values = {TOKENIZER_PREFIX + k: v for k, v in fields.items() if v not in (None, [])}
        values.update(tokenizer.extra)
        for key, value in values.items():
            vtype, item = (GGUFValueType.ARRAY, GGUFValueType.INT32) if key.endswith("token_type") else _metadata_type(value)
            items[key] = (value, vtype, item)
    items.update(metadata)
    for key, (value, vtype, item) in items.items():
        if key in own:
            raise GGUFFormatError(f"metadata key {key!r} is set by the writer itself (from the config or the tensors)")
        _add_value(writer, key, value, vtype, item)


def _spool(tensors: Iterable[TensorData], spool: BinaryIO) -> tuple[list[TensorData], dict[str, int]]:
    """Copy each tensor's bytes to ``spool``; return the tensors (bytes left on the meta device) and offsets."""
    plan, offsets = [], {}
    for tensor in tensors:
        offsets[tensor.name] = spool.tell()
        tensor.raw.detach().cpu().contiguous().numpy().tofile(spool)
        placeholder = torch.empty(tuple(tensor.raw.shape), dtype=torch.uint8, device="meta")
        plan.append(TensorData(tensor.name, tensor.qtype, tuple(tensor.shape), placeholder))
    spool.flush()
    return plan, offsets


def write_gguf(path: str | Path, config: Qwen2Config, tensors: Iterable[TensorData], tokenizer: Tokenizer | None,
               *, file_type: LlamaFileType | None = None, metadata: Mapping[str, MetadataValue] | None = None) -> None:
    """Write a Qwen2 GGUF file with gguf's writer, tensor by tensor, atomically.

    ``tensors`` may be a generator: its tensors are then spooled one by one to a
    temporary file next to ``path`` (the header, which lists every tensor, must
    come first), so memory holds one tensor at a time. Nothing appears at
    ``path`` unless the whole file was written. The file carries
    ``general.file_type`` (``file_type``, default from the tensors' types:
    ``llama_file_type``) and ``general.quantization_version``, as llama.cpp's
    writers set them; ``metadata`` adds keys with their types (a key the
    writer sets itself is refused).
    """
    path = Path(path)
    with whole_file(path, error=GGUFFormatError) as tmp:
        with tempfile.TemporaryFile(dir=tmp.parent) as spool:
            try:
                _write_to(tmp, spool, path, config, tensors, tokenizer, file_type, metadata or {})
            except OSError as err:
                raise GGUFFormatError(f"{path}: cannot write: {err.strerror or err}") from None


def _write_to(tmp: Path, spool: BinaryIO, path: Path, config: Qwen2Config, tensors: Iterable[TensorData],
              tokenizer: Tokenizer | None, file_type: LlamaFileType | None, metadata: Mapping[str, MetadataValue]) -> None:
    if isinstance(tensors, (list, tuple)):
        plan, offsets = list(tensors), {}
    else:
        plan, offsets = _spool(tensors, spool)
    problems = check_tensors(config, {t.name: t for t in plan})
    if problems:
        raise GGUFFormatError(f"{path}: cannot write: " + "; ".join(problems[:5]))
    writer = gguf.GGUFWriter(tmp, ARCHITECTURE)
    _add_metadata(writer, config, tokenizer, llama_file_type(plan) if file_type is None else file_type, metadata)
    for t in plan:
        writer.add_tensor_info(t.name, tuple(t.raw.shape), np.dtype(np.uint8), t.nbytes,
                               raw_dtype=GGMLQuantizationType[t.qtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in plan:
        if t.name in offsets:
            spool.seek(offsets[t.name])
            data = np.fromfile(spool, dtype=np.uint8, count=t.nbytes)
        else:
            data = t.raw.detach().cpu().contiguous().numpy().reshape(-1)
        writer.write_tensor_data(data)
    writer.close()

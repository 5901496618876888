"""Falsifiers of distill-teacher-backend-selection-v1 for the teacher's storage types and its dequantized size.

A teacher stored in F32, F16 or BF16 has no quantized weights: q4k-native is refused
for it and auto takes the dense path. The dequantized size that auto compares with
free memory must be the bytes the dequant backend then holds, and the q4k-native size
(blocks, plain weights, one shared scratch) the bytes q4k-native holds. Expected values come
from gguf's reader (element counts) and torch's storages, not from the code under test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from gguf import GGUFReader

from distill import dispatch, qwen2_gguf, quant, teacher
from distill.errors import BackendSelectionError, InsufficientMemoryError
from distill.model import QuantLinear

ModelFile = Callable[[str], Path]

#: what these falsifiers check (``pv mutate`` runs them against mutants of it)
COVERS = ["distill.teacher", "distill.dispatch"]
GIB = 1024**3
#: the storage types a GGUF teacher can have without any block-quantized weight (GGML type names)
PLAIN_TYPES = ("F32", "F16", "BF16")


def _f16_copy(source: Path, target: Path) -> Path:
    """``source`` (a bf16 model) rewritten with every BF16 tensor stored as F16."""
    model = qwen2_gguf.read_gguf(source)
    tensors = [dataclasses.replace(t, qtype="F16", raw=quant.quantize(t.dequantize(), "F16"))
               if t.qtype == "BF16" else t for t in model.tensors.values()]
    qwen2_gguf.write_gguf(target, model.config, tensors, model.tokenizer)
    return target


@pytest.fixture(scope="module")
def plain_teachers(model_file: ModelFile, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One teacher file per plain storage type (the name of its matrices' type -> file)."""
    bf16 = model_file("tiny-teacher-bf16")
    f16 = _f16_copy(bf16, tmp_path_factory.mktemp("f16") / "tiny-teacher-f16.gguf")
    return {"F32": model_file("tiny-student"), "F16": f16, "BF16": bf16}


def _stored_types(path: Path) -> set[str]:
    return {tensor.tensor_type.name for tensor in GGUFReader(path).tensors}


@pytest.mark.falsifies("FT-BACKEND-SEL-009", covers=COVERS, mutants=[
    "teacher-f32-counted-quantized", "teacher-f16-counted-quantized", "teacher-bf16-counted-quantized"])
def test_plain_teachers_are_not_quantized(plain_teachers: dict[str, Path], model_file: ModelFile) -> None:
    for matrix_type, path in plain_teachers.items():
        stored = _stored_types(path)
        assert matrix_type in stored and stored <= set(PLAIN_TYPES), (path, stored)  # the file is what it claims
        model = qwen2_gguf.read_gguf(path)
        assert not teacher.is_quantized(model), matrix_type
        with pytest.raises(BackendSelectionError):
            teacher.load_teacher(model, "q4k-native")
        # auto takes the dense path for a plain teacher where it fits, and refuses (never q4k-native) where not
        assert dispatch.select_teacher_backend("auto", "discrete", teacher.is_quantized(model), 30 * GIB, 80 * GIB) == "dequant"
        with pytest.raises(InsufficientMemoryError):
            dispatch.select_teacher_backend("auto", "discrete", teacher.is_quantized(model), 30 * GIB, 0)
        assert teacher.load_teacher(model, "dequant").backend == "dequant"
    quantized = qwen2_gguf.read_gguf(model_file("tiny-teacher"))
    assert {"Q4_K", "Q6_K"} & _stored_types(quantized.path)
    assert teacher.is_quantized(quantized)


def _held_bytes(loaded: teacher.Teacher) -> int:
    """Bytes of the distinct tensor storages of the modules a teacher object holds."""
    storages: dict[int, int] = {}
    for value in vars(loaded).values():
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return sum(storages.values())


@pytest.mark.falsifies("FT-BACKEND-SEL-008", covers=COVERS, mutants=["dequant-size-zeroed", "dequant-size-halved"])
def test_dequantized_size_is_what_the_dequant_backend_holds(model_file: ModelFile, evidence) -> None:
    path = model_file("tiny-teacher")
    elements = sum(int(tensor.n_elements) for tensor in GGUFReader(path).tensors)
    model = qwen2_gguf.read_gguf(path)
    for dtype, itemsize in ((torch.float32, 4), (torch.bfloat16, 2)):
        estimate = teacher.dequantized_bytes(model, dtype)
        held = _held_bytes(teacher.load_teacher(model, "dequant", dtype=dtype))
        evidence(f"dequant_bytes_{str(dtype).split('.')[-1]}", estimate, "B")
        assert estimate == elements * itemsize, (dtype, estimate, elements * itemsize)
        assert held <= estimate, f"the dequant backend holds {held} B, more than the {estimate} B estimated ({dtype})"
        assert held >= 0.99 * estimate, (dtype, held, estimate)


@pytest.mark.falsifies("FT-BACKEND-SEL-010", covers=COVERS, mutants=["native-size-scratch-omitted", "teacher-scratch-unreported"])
def test_native_size_is_what_the_q4k_native_backend_holds(plain_teachers: dict[str, Path], model_file: ModelFile,
                                                          evidence) -> None:
    path = model_file("tiny-teacher")
    stored = GGUFReader(path).tensors
    blocks = [tensor for tensor in stored if tensor.tensor_type.name not in PLAIN_TYPES]
    plain_elements = sum(int(tensor.n_elements) for tensor in stored if tensor.tensor_type.name in PLAIN_TYPES)
    largest = max(int(tensor.n_elements) for tensor in blocks)  # the scratch: the largest matrix kept as blocks
    model = qwen2_gguf.read_gguf(path)
    for dtype, itemsize in ((torch.float32, 4), (torch.bfloat16, 2)):
        expected = sum(int(tensor.n_bytes) for tensor in blocks) + (plain_elements + largest) * itemsize
        estimate = teacher.native_resident_bytes(model, dtype)
        evidence(f"native_bytes_{str(dtype).split('.')[-1]}", estimate, "B")
        assert estimate == expected, (dtype, estimate, expected)
        loaded = teacher.load_teacher(model, "q4k-native", dtype=dtype)
        assert loaded.scratch_bytes() == largest * itemsize, (dtype, loaded.scratch_bytes(), largest * itemsize)
        layers = [m for value in vars(loaded).values() if isinstance(value, torch.nn.Module)
                  for m in value.modules() if isinstance(m, QuantLinear)]
        expanded = [layer.weight() for layer in layers]  # all alive at once: one storage only if they share it
        assert len(layers) > 1 and len({w.untyped_storage().data_ptr() for w in expanded}) == 1, len(layers)
        held = _held_bytes(loaded) + loaded.scratch_bytes()
        assert 0.99 * estimate <= held <= estimate, (dtype, held, estimate)
        assert teacher.load_teacher(model, "dequant", dtype=dtype).scratch_bytes() == 0  # no scratch: dense weights
    for matrix_type, plain_path in plain_teachers.items():  # nothing kept as blocks: no scratch, every weight dense
        plain = qwen2_gguf.read_gguf(plain_path)
        elements = sum(int(tensor.n_elements) for tensor in GGUFReader(plain_path).tensors)
        assert teacher.scratch_elements(plain) == 0, matrix_type
        assert teacher.native_resident_bytes(plain, torch.float32) == 4 * elements, matrix_type

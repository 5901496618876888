"""Falsifiers of distill-frozen-q4k-teacher-v1 on CPU: frozen, resident bytes, parity, block formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize as reference_dequantize

from distill import qwen2_gguf, quant, teacher
from distill.errors import FrozenTeacherError, QuantError
from ft_runs import pv_distill

ModelFile = Callable[[str], Path]

#: what these falsifiers check (``pv mutate`` runs them against mutants of it): the teacher (its q4k-native
#: backend is distill.model's QuantLinear), and the decoding of the block formats (not the quantizers that
#: write test models)
TEACHER = ["distill.teacher", "distill.model:QuantLinear"]
QUANT_DECODING = [f"distill.quant:{name}" for name in (
    "dequantize", "check_scales", "_as_blocks", "_fp16_field", "_q4_k_scales_mins", "_dequant_q4_k", "_dequant_q6_k")]

#: byte offsets of the fp16 super-block scales (d, dmin) per type (llama.cpp block layouts)
FP16_SCALE_OFFSETS = {"Q4_K": (0, 2), "Q6_K": (208,)}
BLOCK_BYTES = {"Q4_K": 144, "Q6_K": 210}


def _random_blocks(qtype: str, rows: int, blocks_per_row: int, seed: int) -> np.ndarray:
    """Random bytes for every field, with finite fp16 scales (the contract's domain)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, blocks_per_row, BLOCK_BYTES[qtype]), dtype=np.uint8)
    for offset in FP16_SCALE_OFFSETS[qtype]:
        scales = (rng.standard_normal((rows, blocks_per_row)) * rng.choice([1e-4, 1e-2, 1.0, 300.0])).astype(np.float16)
        raw[:, :, offset:offset + 2] = scales.view(np.uint8).reshape(rows, blocks_per_row, 2)
    return raw.reshape(rows, blocks_per_row * BLOCK_BYTES[qtype])


@pytest.mark.falsifies("FT-FROZEN-004", covers=QUANT_DECODING, mutants=[
    "q4k-nibble-order-swapped", "q4k-scale-high-bits-dropped", "q6k-high-bits-dropped"])
def test_block_dequantization_bit_exact_with_reference() -> None:
    for qtype in ("Q4_K", "Q6_K"):
        for seed, (rows, blocks_per_row) in enumerate([(1, 1), (7, 3), (64, 8)]):
            raw = _random_blocks(qtype, rows, blocks_per_row, seed)
            got = quant.dequantize(torch.from_numpy(raw), qtype).numpy()
            want = reference_dequantize(raw, GGMLQuantizationType[qtype]).astype(np.float32)
            assert got.shape == want.shape, (qtype, got.shape, want.shape)
            differ = got.view(np.uint32) != want.view(np.uint32)
            assert not differ.any(), (qtype, rows, blocks_per_row, int(differ.sum()), got[differ][:4], want[differ][:4])
    # what is not a block is refused, naming what is wrong: the dtype, the row width, a non-finite scale
    blocks = _random_blocks("Q4_K", 2, 2, 9)
    with pytest.raises(QuantError, match="uint8"):
        quant.dequantize(torch.from_numpy(blocks).to(torch.int16), "Q4_K")
    with pytest.raises(QuantError, match="bytes per row"):
        quant.dequantize(torch.from_numpy(blocks[:, :-1].copy()), "Q4_K")
    blocks[1, 144 + 2:144 + 4] = np.array([np.inf], dtype=np.float16).view(np.uint8)  # dmin of block 3
    with pytest.raises(QuantError, match="block 3"):
        quant.dequantize(torch.from_numpy(blocks), "Q4_K")


def _module_tensors(loaded: teacher.Teacher) -> dict[str, torch.Tensor]:
    """Every tensor (parameters and buffers) of the modules a teacher object holds, by name."""
    found: dict[str, torch.Tensor] = {}
    for attr, value in vars(loaded).items():
        if isinstance(value, torch.nn.Module):
            found.update({f"{attr}.{k}": v for k, v in value.named_parameters(remove_duplicate=False)})
            found.update({f"{attr}.{k}": v for k, v in value.named_buffers(remove_duplicate=False)})
    return found


def _storage_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {(str(t.device), t.untyped_storage().data_ptr()): t.untyped_storage().nbytes() for t in tensors.values()}
    return sum(storages.values())


def _file_tensor_bytes(path: Path) -> int:
    """Bytes of all tensor data in a GGUF file, read with gguf's reader (not the code under test)."""
    return sum(int(tensor.n_bytes) for tensor in GGUFReader(path).tensors)


@pytest.mark.falsifies("FT-FROZEN-001", covers=TEACHER, mutants=[
    "teacher-grad-enabled", "teacher-parameters-exposed", "teacher-weights-decayed"])
@pytest.mark.parametrize("backend", ["dequant", "q4k-native"])
def test_teacher_stays_frozen_through_kd_steps(backend: str, model_file: ModelFile, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    at_load: dict[str, bytes] = {}

    def snapshot(loaded: teacher.Teacher) -> None:
        at_load.update({name: t.detach().cpu().numpy().tobytes() for name, t in _module_tensors(loaded).items()})

    run = pv_distill(capsys, monkeypatch, model_file("tiny-teacher"), model_file("tiny-student"), tmp_path / "run",
                     "--steps", "3", "--backend", backend, "--lr", "1e-2", on_load=snapshot)
    assert run.code == 0, run.stderr
    (used,) = run.teachers
    tensors = _module_tensors(used)
    assert at_load and set(tensors) == set(at_load)
    assert not any(t.requires_grad or t.grad is not None for t in tensors.values())
    changed = [name for name, t in tensors.items() if t.detach().cpu().numpy().tobytes() != at_load[name]]
    assert changed == [], f"teacher tensors changed by training: {changed[:5]}"
    ids = torch.randint(0, used.vocab_size, (1, 4))
    with torch.enable_grad():
        assert not used.logits(ids).requires_grad
    for attempt in (lambda: used.parameters(), lambda: torch.optim.SGD(used.parameters(), lr=0.1),
                    lambda: used.named_parameters(), lambda: used.train(), lambda: used.requires_grad_(True)):
        with pytest.raises(FrozenTeacherError):
            attempt()


@pytest.mark.falsifies("FT-FROZEN-002", covers=TEACHER, mutants=["q4k-native-dequantizes-at-load", "q4k-native-caches-expanded-weights"])
def test_q4k_native_resident_bytes_near_file_bytes(model_file: ModelFile, hw_profile, evidence) -> None:
    path = model_file("tiny-teacher")
    factor = hw_profile.threshold("FT-FROZEN-002", "resident_factor_max")
    file_bytes = _file_tensor_bytes(path)
    loaded = teacher.load_teacher(path, "q4k-native", target_vocab=1024)
    loaded.logits(torch.randint(0, 1024, (2, 8)))  # a forward first: nothing may stay expanded after it
    resident = _storage_bytes(_module_tensors(loaded))
    evidence("resident_bytes", resident, "B")
    evidence("file_tensor_bytes", file_bytes, "B")
    evidence("resident_factor", resident / file_bytes)
    assert loaded.backend == "q4k-native"
    assert resident <= factor * file_bytes, f"resident {resident} B > {factor} x file {file_bytes} B"
    assert loaded.resident_bytes() == resident  # the teacher's own account agrees with its tensors


@pytest.mark.falsifies("FT-FROZEN-003", covers=TEACHER + QUANT_DECODING, mutants=["q4k-native-nibble-order-swapped", "q4k-native-mins-dropped"])
def test_backends_give_the_same_logits(model_file: ModelFile, hw_profile, evidence) -> None:
    source = qwen2_gguf.read_gguf(model_file("tiny-teacher"))
    cosine_min = hw_profile.threshold("FT-FROZEN-003", "cosine_min")
    max_abs = hw_profile.threshold("FT-FROZEN-003", "max_abs_diff_max")
    ids = torch.randint(0, 1024, (2, 16), generator=torch.Generator().manual_seed(3))
    dense = teacher.load_teacher(source, "dequant").logits(ids).double()
    native = teacher.load_teacher(source, "q4k-native").logits(ids).double()
    cosine = torch.nn.functional.cosine_similarity(dense.reshape(-1), native.reshape(-1), dim=0).item()
    diff = (dense - native).abs().max().item()
    evidence("cosine", cosine)
    evidence("max_abs_diff", diff)
    assert dense.std().item() > 0.1  # varied logits, not a constant both backends agree on
    assert cosine >= cosine_min and diff <= max_abs, (cosine, diff)


@pytest.mark.falsifies("FT-FROZEN-001", covers=TEACHER, mutants=[
    "teacher-left-in-train-mode", "teacher-refusal-unnamed", "teacher-parameters-exposed"])
@pytest.mark.parametrize("backend", ["dequant", "q4k-native"])
def test_loaded_teacher_is_frozen_and_names_what_it_refuses(backend: str, model_file: ModelFile) -> None:
    loaded = teacher.load_teacher(model_file("tiny-teacher"), backend)
    modules = [m for value in vars(loaded).values() if isinstance(value, torch.nn.Module) for m in value.modules()]
    assert modules and not any(m.training for m in modules), "the teacher is not in eval mode"
    assert loaded.device == torch.device("cpu"), loaded.device
    # each refusal says what was refused, and of which backend
    refusals = [(lambda: loaded.parameters(), "parameters"), (lambda: loaded.named_parameters(), "parameters"),
                (lambda: loaded.train(), "train()"), (lambda: loaded.train(False), "train()"),
                (lambda: loaded.requires_grad_(), "requires_grad_()"),
                (lambda: loaded.requires_grad_(False), "requires_grad_()")]
    for attempt, named in refusals:
        with pytest.raises(FrozenTeacherError) as caught:
            attempt()
        assert named in str(caught.value) and backend in str(caught.value), caught.value

"""Teacher providers: backend parity, resident memory, frozen-ness, truncation at the boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from distill import teacher as teacher_module
from distill.errors import BackendSelectionError, FrozenTeacherError, VocabAlignmentError
from distill.qwen2_gguf import read_gguf
from distill.kd import kd_loss
from distill.synth import PRESETS, make_model, make_model_file
from distill.teacher import dequantized_bytes, is_quantized, load_teacher

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "cpu.yaml"


def parity_thresholds() -> tuple[float, float]:
    """(cosine minimum, max abs difference) of the backends' parity (FT-FROZEN-003) in the cpu profile."""
    data = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    thresholds = data["thresholds"]["FT-FROZEN-003"]
    return float(thresholds["cosine_min"]), float(thresholds["max_abs_diff_max"])


def resident_factor() -> float:
    data = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    return float(data["thresholds"]["FT-FROZEN-002"]["resident_factor_max"])


@pytest.fixture(scope="module")
def q4k_file(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("teacher") / "teacher.gguf", "tiny", "q4_k_m", None, 7)


@pytest.fixture(scope="module")
def q4k_model(q4k_file):
    return read_gguf(q4k_file)


@pytest.fixture(scope="module")
def both(q4k_model):
    return load_teacher(q4k_model, "dequant"), load_teacher(q4k_model, "q4k-native")


def _ids(vocab: int, shape=(2, 12), seed=0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def test_backends_give_the_same_logits(both, q4k_model):
    dequant, native = both
    ids = _ids(q4k_model.config.vocab_size)
    a, b = dequant.logits(ids).double(), native.logits(ids).double()
    cosine_min, max_abs = parity_thresholds()
    cosine = torch.nn.functional.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0).item()
    assert cosine >= cosine_min
    assert (a - b).abs().max().item() <= max_abs
    assert a.std().item() > 0.1  # real, varied logits, not a constant both sides agree on


def test_backends_are_the_named_ones(both):
    assert [t.backend for t in both] == ["dequant", "q4k-native"]


def test_q4k_native_resident_bytes_stay_near_the_quantized_bytes(both, q4k_model):
    dequant, native = both
    assert is_quantized(q4k_model)
    assert native.quantized_bytes == q4k_model.quantized_bytes > 0
    assert native.resident_bytes() <= resident_factor() * native.quantized_bytes
    # The dequant backend holds the expanded copy: several times more.
    assert dequant.resident_bytes() >= 0.9 * dequantized_bytes(q4k_model, torch.float32)
    assert dequant.resident_bytes() > 3 * native.resident_bytes()


def test_resident_bytes_count_storage_not_views():
    base = torch.zeros(1000)
    assert teacher_module.tensor_storage_bytes([base, base[:10], base.view(10, 100)]) == 4000
    assert teacher_module.tensor_storage_bytes([base, torch.zeros(10, dtype=torch.bfloat16)]) == 4020


@pytest.mark.parametrize("call", ["parameters", "named_parameters", "train", "requires_grad_"])
def test_training_the_teacher_is_refused(both, call):
    for teacher in both:
        with pytest.raises(FrozenTeacherError, match="frozen"):
            getattr(teacher, call)()


def test_an_optimizer_cannot_take_the_teacher(both):
    with pytest.raises(FrozenTeacherError):
        torch.optim.AdamW(both[0].parameters())


def test_teacher_logits_carry_no_autograd_and_weights_stay_unchanged(both, q4k_model):
    vocab = q4k_model.config.vocab_size
    student = make_model(PRESETS["tiny"], "f32", 3, dtype=torch.float32, device="cpu")
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    for teacher in both:
        before = [t.detach().clone() for t in teacher._tensors()]
        assert not any(t.requires_grad for t in teacher._tensors())
        for step in range(2):
            ids = _ids(vocab, seed=step)
            t_logits = teacher.logits(ids)
            assert not t_logits.requires_grad and t_logits.grad_fn is None
            loss = kd_loss(student(ids), t_logits, 2.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = list(teacher._tensors())
        assert len(before) == len(after) and all(torch.equal(x, y) for x, y in zip(before, after))


def test_logits_record_no_graph_even_if_a_weight_was_unfrozen_behind_its_back(q4k_model):
    teacher = load_teacher(q4k_model, "dequant")
    next(teacher._module.parameters()).requires_grad_(True)  # bypassing the frozen interface
    logits = teacher.logits(_ids(q4k_model.config.vocab_size))
    assert logits.grad_fn is None and not logits.requires_grad


def test_truncation_happens_at_the_provider_boundary(q4k_model):
    native_vocab = q4k_model.config.vocab_size
    full = load_teacher(q4k_model, "dequant")
    cut = load_teacher(q4k_model, "dequant", target_vocab=native_vocab - 5)
    ids = _ids(native_vocab)
    assert (full.vocab_size, full.native_vocab_size) == (native_vocab, native_vocab)
    assert (cut.vocab_size, cut.native_vocab_size) == (native_vocab - 5, native_vocab)
    logits = cut.logits(ids)
    assert logits.shape == (2, 12, native_vocab - 5)
    torch.testing.assert_close(logits, full.logits(ids)[..., : native_vocab - 5], rtol=0, atol=0)


def test_oversized_target_is_refused_before_any_weight_is_loaded(q4k_model, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the vocabulary check")

    monkeypatch.setattr(teacher_module, "build_model", no_build)
    native = q4k_model.config.vocab_size
    with pytest.raises(VocabAlignmentError, match=f"{native + 1}.*{native}"):
        load_teacher(q4k_model, "dequant", target_vocab=native + 1)


def test_q4k_native_needs_a_quantized_teacher(tmp_path):
    plain = make_model_file(tmp_path / "plain.gguf", "tiny", "f32", None, 1)
    assert not is_quantized(read_gguf(plain))
    with pytest.raises(BackendSelectionError, match="no quantized weights"):
        load_teacher(plain, "q4k-native")
    assert load_teacher(plain, "dequant").backend == "dequant"


@pytest.mark.parametrize("backend", ["auto", "Q4K", ""])
def test_unknown_backend_is_refused(q4k_model, backend):
    with pytest.raises(BackendSelectionError, match="dequant, q4k-native"):
        load_teacher(q4k_model, backend)


@pytest.mark.gpu
def test_backends_agree_on_cuda(q4k_model):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cosine_min, max_abs = parity_thresholds()
    dequant = load_teacher(q4k_model, "dequant", device="cuda", dtype=torch.float32)
    native = load_teacher(q4k_model, "q4k-native", device="cuda", dtype=torch.float32)
    ids = _ids(q4k_model.config.vocab_size)
    a, b = dequant.logits(ids).double().cpu(), native.logits(ids).double().cpu()
    cpu = load_teacher(q4k_model, "dequant").logits(ids).double()
    assert torch.nn.functional.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0).item() >= cosine_min
    assert (a - b).abs().max().item() <= max_abs
    assert (a - cpu).abs().max().item() <= max_abs
    assert native.resident_bytes() <= resident_factor() * native.quantized_bytes

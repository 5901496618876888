"""Falsifiers of distill-teacher-vocab-alignment-v1: sizes, truncation, token prefixes, vocab-check."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader

import ft_reference as ref
from distill import qwen2_gguf, kd, model, teacher, train, vocab
from distill.errors import VocabAlignmentError
from ft_runs import spy_on_teacher
from pv import cli

#: what these falsifiers check (``pv mutate`` runs them against mutants of it)
VOCAB = ["distill.vocab"]
VOCAB_CHECK = ["distill.vocab", *(f"distill.commands.vocab_check:{name}" for name in ("run", "format_comparison", "_token"))]
TEACHER_SIDE = ["distill.vocab", "distill.teacher"]
KD = ["distill.kd"]

#: measured on the real files with gguf's GGUFReader (the reference reader), not with the code under test
QWEN2_LLAMA_FIRST_DIFF = 410
QWEN2_TOKEN_410 = "ith"
LLAMA_BPE_TOKEN_410 = "00"
QWEN2_ROWS, LLAMA_BPE_ROWS, NEOX_ROWS = 151936, 128256, 50432
#: embedding rows of the model files (conftest.MODEL_FILES): Qwen2.5-7B and 0.5B, and the tiny pair
TEACHER_7B_ROWS, STUDENT_05B_ROWS = 152064, 151936
TINY_TEACHER_ROWS, TINY_STUDENT_ROWS = 1152, 1024

ModelFile = Callable[[str], Path]


def _ids(rows: int, shape: tuple[int, int] = (2, 8), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, rows, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.falsifies("FT-VOCAB-ALIGN-001", covers=TEACHER_SIDE, mutants=[
    "teacher-no-truncation", "teacher-truncate-last-rows", "train-target-vocab-not-passed"])
def test_first_kd_step_of_a_152064_teacher_and_151936_student(model_file: ModelFile, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    teacher_path, student_path = model_file("qwen2-teacher"), model_file("qwen2-student")
    teachers, _ = spy_on_teacher(monkeypatch)
    config = train.DistillConfig(out_dir=tmp_path / "run", teacher=teacher_path, student=student_path,
                                 steps=1, batch=1, seq=8, backend="dequant")
    result = train.run_distillation(config, echo=lambda line: None)
    assert len(result.losses) == 1 and math.isfinite(result.losses[0]) and result.losses[0] > 0

    (used,) = teachers
    ids = _ids(STUDENT_05B_ROWS)
    handed_out = used.logits(ids)
    native = teacher.load_teacher(teacher_path, "dequant").logits(ids)
    assert native.shape[-1] == TEACHER_7B_ROWS
    assert handed_out.shape == (*ids.shape, STUDENT_05B_ROWS)
    assert torch.equal(handed_out, native[..., :STUDENT_05B_ROWS])  # the shared rows, aligned


@pytest.mark.falsifies("FT-VOCAB-ALIGN-002", covers=TEACHER_SIDE, mutants=["teacher-reports-native-vocab", "teacher-no-truncation"])
def test_teacher_reports_its_effective_vocabulary(model_file: ModelFile) -> None:
    cases = [("qwen2-teacher", "dequant", TEACHER_7B_ROWS, STUDENT_05B_ROWS),
             ("tiny-teacher", "dequant", TINY_TEACHER_ROWS, TINY_STUDENT_ROWS),
             ("tiny-teacher", "q4k-native", TINY_TEACHER_ROWS, TINY_STUDENT_ROWS)]
    for name, backend, native_rows, target in cases:
        loaded = teacher.load_teacher(model_file(name), backend, target_vocab=target)
        assert (loaded.native_vocab_size, loaded.vocab_size) == (native_rows, target), (name, backend)
        assert loaded.logits(_ids(target)).shape[-1] == target, (name, backend)


@pytest.mark.falsifies("FT-VOCAB-ALIGN-003", covers=TEACHER_SIDE, mutants=["vocab-target-clamped", "vocab-larger-student-accepted"])
def test_oversized_target_and_larger_student_refused(model_file: ModelFile, monkeypatch: pytest.MonkeyPatch) -> None:
    small = qwen2_gguf.read_gguf(model_file("qwen2-student"))
    builds: list[object] = []
    monkeypatch.setattr(teacher, "build_model", lambda *args, **kwargs: builds.append(args) or model.build_model(*args, **kwargs))
    with pytest.raises(VocabAlignmentError) as caught:
        teacher.load_teacher(small, "dequant", target_vocab=TEACHER_7B_ROWS)
    assert str(TEACHER_7B_ROWS) in str(caught.value) and str(STUDENT_05B_ROWS) in str(caught.value), caught.value
    assert builds == []  # refused before any model was built

    # a student with more rows than the teacher: same tokens, 128 rows more
    comparison = vocab.compare_tokenizers(small.tokenizer, small.tokenizer, teacher_rows=STUDENT_05B_ROWS,
                                          student_rows=TEACHER_7B_ROWS)
    with pytest.raises(VocabAlignmentError) as caught:
        vocab.require_shared_prefix(comparison)
    assert str(TEACHER_7B_ROWS) in str(caught.value) and str(STUDENT_05B_ROWS) in str(caught.value), caught.value


@pytest.mark.falsifies("FT-VOCAB-ALIGN-004", covers=TEACHER_SIDE + KD, mutants=["truncate-after-softmax", "teacher-truncate-last-rows"])
def test_truncation_happens_before_softmax(model_file: ModelFile) -> None:
    teacher_file = qwen2_gguf.read_gguf(model_file("tiny-teacher"))
    student_file = qwen2_gguf.read_gguf(model_file("tiny-student"))
    ids, temperature = _ids(TINY_STUDENT_ROWS, (2, 6)), 2.0
    full = teacher.load_teacher(teacher_file, "dequant").logits(ids)
    assert full.shape[-1] == TINY_TEACHER_ROWS
    handed_out = teacher.load_teacher(teacher_file, "dequant", target_vocab=TINY_STUDENT_ROWS).logits(ids)
    student = model.build_model(student_file.config, student_file.tensors)(ids).detach().requires_grad_(True)
    loss = kd.kd_loss(student, handed_out, temperature)
    loss.backward()

    # The teacher distribution the loss used, recovered from its gradient T/n (p_s - p_t):
    n = ids.numel()
    s64 = ref.as64(student)
    used = ref.softmax64(s64 / temperature) - ref.as64(student.grad) * n / temperature
    want = ref.softmax64(ref.as64(full)[..., :TINY_STUDENT_ROWS] / temperature)  # softmax of the cut logits
    np.testing.assert_allclose(used.sum(-1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(used, want, rtol=0, atol=1e-6)
    expected_loss = ref.kd_loss64(s64, ref.as64(full)[..., :TINY_STUDENT_ROWS], temperature)
    assert math.isclose(loss.item(), expected_loss, rel_tol=1e-4), (loss.item(), expected_loss)


@pytest.fixture(scope="session")
def vocab_files(vocab_dir: Path) -> dict[str, Path]:
    return {name: vocab_dir / f"ggml-vocab-{name}.gguf" for name in ("qwen2", "llama-bpe", "gpt-neox", "mpt")}


@pytest.mark.falsifies("FT-VOCAB-ALIGN-005", covers=VOCAB, mutants=["vocab-prefix-sizes-only", "vocab-prefix-check-skipped"])
def test_shared_prefix_on_real_vocabularies(vocab_files: dict[str, Path]) -> None:
    differing = vocab.compare_vocabs(vocab_files["qwen2"], vocab_files["llama-bpe"])
    assert (differing.teacher_len, differing.student_len) == (QWEN2_ROWS, LLAMA_BPE_ROWS)
    with pytest.raises(VocabAlignmentError) as caught:
        vocab.require_shared_prefix(differing)
    message = str(caught.value)
    for fact in (str(QWEN2_LLAMA_FIRST_DIFF), repr(QWEN2_TOKEN_410), repr(LLAMA_BPE_TOKEN_410)):
        assert fact in message, (fact, message)

    same = vocab.compare_vocabs(vocab_files["gpt-neox"], vocab_files["mpt"])
    vocab.require_shared_prefix(same)  # accepted
    assert same.student_is_teacher_prefix and same.first_diff is None
    assert (same.teacher_len, same.student_len, same.truncated_rows) == (NEOX_ROWS, NEOX_ROWS, 0)


def _vocab_check(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["vocab-check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.falsifies("FT-VOCAB-ALIGN-006", covers=VOCAB_CHECK, mutants=["vocab-prefix-sizes-only", "vocab-check-exit-by-size"])
def test_vocab_check_exit_codes_and_json(vocab_files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _vocab_check(capsys, vocab_files["qwen2"], vocab_files["llama-bpe"], "--json")
    report = json.loads(out)
    assert code == 1
    assert report["first_diff"] == QWEN2_LLAMA_FIRST_DIFF and report["student_is_teacher_prefix"] is False
    assert (report["teacher_token"], report["student_token"]) == (QWEN2_TOKEN_410, LLAMA_BPE_TOKEN_410)
    assert (report["teacher_len"], report["student_len"]) == (QWEN2_ROWS, LLAMA_BPE_ROWS)

    code, out, _ = _vocab_check(capsys, vocab_files["gpt-neox"], vocab_files["mpt"], "--json")
    report = json.loads(out)
    assert code == 0
    assert report["first_diff"] is None and report["student_is_teacher_prefix"] is True
    assert (report["teacher_len"], report["student_len"]) == (NEOX_ROWS, NEOX_ROWS)

    # the same comparisons as text: the verdict, the index, both tokens, the truncation
    code, out, _ = _vocab_check(capsys, vocab_files["qwen2"], vocab_files["llama-bpe"])
    assert code == 1 and "NOT aligned" in out, out
    for fact in (f"index {QWEN2_LLAMA_FIRST_DIFF}", repr(QWEN2_TOKEN_410), repr(LLAMA_BPE_TOKEN_410),
                 f"({QWEN2_ROWS} rows)", f"({LLAMA_BPE_ROWS} rows)"):
        assert fact in out, (fact, out)
    code, out, _ = _vocab_check(capsys, vocab_files["gpt-neox"], vocab_files["mpt"])
    assert code == 0 and "aligned" in out and "NOT aligned" not in out and "no truncation" in out, out

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(vocab_files["mpt"].read_bytes()[:4096])
    not_gguf = tmp_path / "not-a-model.gguf"
    not_gguf.write_text("this is not a GGUF file\n")
    for bad in (truncated, not_gguf, tmp_path / "missing.gguf"):
        code, out, err = _vocab_check(capsys, vocab_files["gpt-neox"], bad, "--json")
        assert code == 2 and out == "", (bad, code, out)
        assert str(bad) in err and "Traceback" not in err, err


def _unpadded_copy(source: Path, target: Path, tokens: int) -> Path:
    """``source`` rewritten with only its first ``tokens`` token entries (its embedding rows unchanged)."""
    model = qwen2_gguf.read_gguf(source)
    tok = model.tokenizer
    short = dataclasses.replace(tok, tokens=tok.tokens[:tokens], token_types=tok.token_types[:tokens])
    qwen2_gguf.write_gguf(target, model.config, list(model.tensors.values()), short)
    return target


@pytest.mark.falsifies("FT-VOCAB-ALIGN-006", covers=VOCAB_CHECK, mutants=["vocab-rows-not-read", "vocab-rows-wrong-axis"])
def test_vocab_check_on_model_files_counts_embedding_rows(model_file: ModelFile, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # the real qwen2 tokens: a 152064-row teacher file against a 151936-row student file
    code, out, err = _vocab_check(capsys, model_file("qwen2-teacher"), model_file("qwen2-student"), "--json")
    assert code == 0, (code, err)
    report = json.loads(out)
    assert report["first_diff"] is None, report
    assert (report["teacher_len"], report["student_len"], report["truncated_rows"]) == (
        TEACHER_7B_ROWS, STUDENT_05B_ROWS, TEACHER_7B_ROWS - STUDENT_05B_ROWS)
    # a teacher whose token list stops before its embedding rows: the rows, not the list, count
    short = _unpadded_copy(model_file("tiny-teacher"), tmp_path / "short-list.gguf", TINY_STUDENT_ROWS)
    assert len(GGUFReader(short).fields["tokenizer.ggml.tokens"].data) == TINY_STUDENT_ROWS
    code, out, err = _vocab_check(capsys, short, model_file("tiny-student"), "--json")
    assert code == 0, (code, err)
    report = json.loads(out)
    assert (report["teacher_len"], report["student_len"], report["truncated_rows"]) == (
        TINY_TEACHER_ROWS, TINY_STUDENT_ROWS, TINY_TEACHER_ROWS - TINY_STUDENT_ROWS)
    code, out, _ = _vocab_check(capsys, short, model_file("tiny-student"))
    assert code == 0 and f"cut from {TINY_TEACHER_ROWS} to {TINY_STUDENT_ROWS}" in out, out
    code, out, err = _vocab_check(capsys, model_file("tiny-student"), short, "--json")  # the larger one as student
    assert code == 1, (code, err)
    report = json.loads(out)
    assert report["first_diff"] == TINY_STUDENT_ROWS and report["student_len"] == TINY_TEACHER_ROWS

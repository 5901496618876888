"""Falsifiers of distill-teacher-vocab-alignment-v1: sizes, truncation, token prefixes, vocab-check."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import gguf
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
#: the other tokenizer.ggml.* keys whose values differ (token types over the shared rows), by GGUFReader
QWEN2_LLAMA_DIFFERING_KEYS = sorted([*(f"tokenizer.ggml.{key}" for key in (
    "pre", "merges", "token_type", "bos_token_id", "eos_token_id", "padding_token_id")),
    "tokenizer.chat_template"])  # padding and chat template: qwen2 only
NEOX_MPT_DIFFERING_KEYS = ["tokenizer.ggml.pre"]  # gpt-neox has no pre key, mpt has 'mpt'
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
    # not "differ at token index": the rows both have agree; the first student-only row is its padding
    assert f"first student-only token at index {STUDENT_05B_ROWS}: '[PAD{STUDENT_05B_ROWS}]'" in str(caught.value)
    assert "larger than the teacher" in str(caught.value) and "differ at" not in str(caught.value), caught.value


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


def _listed_keys(out: str) -> list[str]:
    """The keys of vocab-check's "other differing tokenizer keys: a, b" line, sorted ([] without the line)."""
    lines = [line for line in out.splitlines() if line.startswith("other differing tokenizer keys: ")]
    assert len(lines) <= 1, out
    return sorted(lines[0].split(": ", 1)[1].split(", ")) if lines else []


def _write_vocab(path: Path, tokens: list[str], token_types: list[int], model: str, pre: str, merges: list[str],
                 ids: dict[str, int], rows: int | None = None) -> Path:
    """A small GGUF file written with gguf's GGUFWriter: a vocabulary, and ``rows`` embedding rows if given."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    for key, value in ids.items():
        writer.add_uint32(f"tokenizer.ggml.{key}", value)
    if rows is not None:
        writer.add_tensor("token_embd.weight", np.zeros((rows, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.falsifies("FT-VOCAB-ALIGN-006", covers=VOCAB_CHECK, mutants=[
    "vocab-one-sided-keys-ignored", "vocab-fewer-rows-than-tokens-accepted", "vocab-prefix-sizes-only"])
def test_vocab_check_full_report_on_small_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # every other tokenizer key differs: model, pre, merges, the type of shared row 1, a bos id only the
    # teacher has, an eos id only the student has; padding_token_id is the same on both sides.
    # The teacher is a model file with one embedding row per token, the student a vocabulary-only file.
    teacher = _write_vocab(tmp_path / "teacher.gguf", ["a", "b", "c"], [1, 1, 1], "gpt2", "one", ["a b"],
                           {"bos_token_id": 0, "padding_token_id": 2}, rows=3)
    student = _write_vocab(tmp_path / "student.gguf", ["a", "b"], [1, 3], "llama", "two", ["b c"],
                           {"eos_token_id": 1, "padding_token_id": 2})
    keys = sorted(f"tokenizer.ggml.{key}" for key in ("model", "pre", "merges", "token_type", "bos_token_id", "eos_token_id"))

    code, out, err = _vocab_check(capsys, teacher, student, "--json")
    assert code == 0, (code, err)  # the tokens are a prefix: the other keys are reported, not refused
    assert out.startswith('{\n  "teacher": '), out  # indented by two spaces
    report = json.loads(out)
    assert sorted(report.pop("differing_keys")) == keys, out
    assert report == {"teacher": str(teacher), "student": str(student), "teacher_len": 3, "student_len": 2,
                      "first_diff": None, "student_is_teacher_prefix": True, "teacher_token": None,
                      "student_token": None, "truncated_rows": 1}, report

    code, out, err = _vocab_check(capsys, teacher, student)
    assert code == 0, (code, err)
    assert out.splitlines()[:3] == [f"teacher: {teacher} (3 rows)", f"student: {student} (2 rows)",
                                    "aligned: the student's tokens are a prefix of the teacher's "
                                    "(teacher logits cut from 3 to 2)"], out
    assert len(out.splitlines()) == 4 and _listed_keys(out) == keys, out

    # the longer list as the student: the teacher's list ends at row 2
    code, out, err = _vocab_check(capsys, student, teacher)
    assert code == 1, (code, err)
    assert out.splitlines()[2] == "NOT aligned: first difference at index 2: teacher (none: list ended), student 'c'", out

    # a file with fewer embedding rows (2) than tokens (3) is refused, naming its side
    short = _write_vocab(tmp_path / "short.gguf", ["a", "b", "c"], [1, 1, 1], "gpt2", "one", ["a b"], {}, rows=2)
    for args, side in (((teacher, short), "student"), ((short, teacher), "teacher")):
        code, out, err = _vocab_check(capsys, *args, "--json")
        assert code == 2 and out == "", (args, code, out)
        assert f"{side} has 2 embedding rows but 3 tokens" in err and "Traceback" not in err, err


@pytest.mark.falsifies("FT-VOCAB-ALIGN-003", covers=VOCAB, mutants=["vocab-larger-student-accepted", "vocab-prefix-check-skipped"])
def test_larger_student_refused_on_small_files(tmp_path: Path) -> None:
    def write(name: str, tokens: list[str]) -> Path:
        return _write_vocab(tmp_path / f"{name}.gguf", tokens, [1] * len(tokens), "gpt2", "one", [], {})

    two, three, other = write("two", ["a", "b"]), write("three", ["a", "b", "c"]), write("other", ["a", "x"])
    vocab.require_shared_prefix(vocab.compare_vocabs(three, two))  # a prefix: accepted
    vocab.require_shared_prefix(vocab.compare_vocabs(two, two))
    with pytest.raises(VocabAlignmentError) as caught:  # the rows both have agree: refused for its size
        vocab.require_shared_prefix(vocab.compare_vocabs(two, three))
    message = str(caught.value)
    for fact in ("the student has 3 vocabulary rows, more than the teacher's 2",
                 "first student-only token at index 2: 'c'", "larger than the teacher"):
        assert fact in message, (fact, message)
    with pytest.raises(VocabAlignmentError) as caught:  # same size, a different token: refused for it
        vocab.require_shared_prefix(vocab.compare_vocabs(two, other))
    message = str(caught.value)
    for fact in ("differ at token index 1: teacher 'b', student 'x'", "(teacher 2 rows, student 2)"):
        assert fact in message, (fact, message)


@pytest.mark.falsifies("FT-VOCAB-ALIGN-006", covers=VOCAB_CHECK, mutants=["vocab-prefix-sizes-only", "vocab-check-exit-by-size"])
def test_vocab_check_exit_codes_and_json(vocab_files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _vocab_check(capsys, vocab_files["qwen2"], vocab_files["llama-bpe"], "--json")
    report = json.loads(out)
    assert code == 1
    assert (report["teacher"], report["student"]) == (str(vocab_files["qwen2"]), str(vocab_files["llama-bpe"]))
    assert sorted(report["differing_keys"]) == QWEN2_LLAMA_DIFFERING_KEYS, report["differing_keys"]
    assert report["first_diff"] == QWEN2_LLAMA_FIRST_DIFF and report["student_is_teacher_prefix"] is False
    assert (report["teacher_token"], report["student_token"]) == (QWEN2_TOKEN_410, LLAMA_BPE_TOKEN_410)
    assert (report["teacher_len"], report["student_len"]) == (QWEN2_ROWS, LLAMA_BPE_ROWS)

    code, out, _ = _vocab_check(capsys, vocab_files["gpt-neox"], vocab_files["mpt"], "--json")
    report = json.loads(out)
    assert code == 0  # a differing pre key is reported, not refused
    assert report["first_diff"] is None and report["student_is_teacher_prefix"] is True
    assert (report["teacher_len"], report["student_len"]) == (NEOX_ROWS, NEOX_ROWS)
    assert report["differing_keys"] == NEOX_MPT_DIFFERING_KEYS, report

    # the same comparisons as text: the verdict, the index, both tokens, the truncation
    code, out, _ = _vocab_check(capsys, vocab_files["qwen2"], vocab_files["llama-bpe"])
    assert code == 1 and "NOT aligned" in out, out
    for fact in (f"index {QWEN2_LLAMA_FIRST_DIFF}", repr(QWEN2_TOKEN_410), repr(LLAMA_BPE_TOKEN_410),
                 f"({QWEN2_ROWS} rows)", f"({LLAMA_BPE_ROWS} rows)"):
        assert fact in out, (fact, out)
    assert _listed_keys(out) == QWEN2_LLAMA_DIFFERING_KEYS, out
    code, out, _ = _vocab_check(capsys, vocab_files["gpt-neox"], vocab_files["mpt"])
    assert code == 0 and "aligned" in out and "NOT aligned" not in out and "no truncation" in out, out
    assert _listed_keys(out) == NEOX_MPT_DIFFERING_KEYS, out

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
    assert report["differing_keys"] == [], report  # the same vocabulary; the types of the cut rows do not count
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
    # past the teacher's list, the student's row 1024 is its padding entry
    assert (report["teacher_token"], report["student_token"]) == (None, f"[PAD{TINY_STUDENT_ROWS}]"), report

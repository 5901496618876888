"""Falsifiers of distill-teacher-vocab-alignment-v1: sizes, truncation, token prefixes, vocab-check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill import vocab
from distill.errors import VocabAlignmentError
from pv import cli

#: measured on the real files with gguf's GGUFReader (the reference reader), not with the code under test
QWEN2_LLAMA_FIRST_DIFF = 410
QWEN2_TOKEN_410 = "ith"
LLAMA_BPE_TOKEN_410 = "00"
QWEN2_ROWS, LLAMA_BPE_ROWS, NEOX_ROWS = 151936, 128256, 50432


@pytest.fixture(scope="session")
def vocab_files(vocab_dir: Path) -> dict[str, Path]:
    return {name: vocab_dir / f"ggml-vocab-{name}.gguf" for name in ("qwen2", "llama-bpe", "gpt-neox", "mpt")}


@pytest.mark.falsifies("FT-VOCAB-ALIGN-005", mutants=["vocab-prefix-sizes-only", "vocab-prefix-check-skipped"])
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


@pytest.mark.falsifies("FT-VOCAB-ALIGN-006", mutants=["vocab-prefix-sizes-only", "vocab-check-exit-by-size"])
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

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(vocab_files["mpt"].read_bytes()[:4096])
    not_gguf = tmp_path / "not-a-model.gguf"
    not_gguf.write_text("this is not a GGUF file\n")
    for bad in (truncated, not_gguf, tmp_path / "missing.gguf"):
        code, out, err = _vocab_check(capsys, vocab_files["gpt-neox"], bad, "--json")
        assert code == 2 and out == "", (bad, code, out)
        assert str(bad) in err and "Traceback" not in err, err

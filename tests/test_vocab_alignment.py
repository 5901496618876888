"""Vocabulary alignment: effective_vocab, truncation, token-prefix comparison, pv vocab-check."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from distill.errors import VocabAlignmentError
from distill.tokenizer import Tokenizer, read_tokenizer
from distill.vocab import (
    compare_tokenizers,
    compare_vocabs,
    effective_vocab,
    require_shared_prefix,
    truncate_logits,
)
from pv.cli import main as pv_main


# --- effective_vocab and truncate_logits -------------------------------------------------------


@given(st.integers(1, 1 << 20), st.data())
def test_effective_vocab_is_the_target_when_it_fits(native, data):
    target = data.draw(st.integers(1, native))
    assert effective_vocab(native, target) == target


@given(st.integers(1, 1 << 20))
def test_effective_vocab_without_target_is_native(native):
    assert effective_vocab(native, None) == native


@given(st.integers(1, 1 << 20), st.integers(1, 1 << 10))
def test_effective_vocab_refuses_a_larger_target_naming_both(native, extra):
    with pytest.raises(VocabAlignmentError) as err:
        effective_vocab(native, native + extra)
    assert str(native) in str(err.value) and str(native + extra) in str(err.value)


@pytest.mark.parametrize("native, target", [(0, None), (0, 1), (-5, None), (10, 0), (10, -1)])
def test_effective_vocab_refuses_non_positive_sizes(native, target):
    with pytest.raises(VocabAlignmentError, match=">= 1"):
        effective_vocab(native, target)


def test_truncate_logits_keeps_the_first_rows_as_a_view():
    logits = torch.randn(2, 3, 10)
    cut = truncate_logits(logits, 7)
    assert cut.shape == (2, 3, 7)
    assert torch.equal(cut, logits[..., :7])
    assert cut.untyped_storage().data_ptr() == logits.untyped_storage().data_ptr()
    assert truncate_logits(logits, 10).shape == (2, 3, 10)


def test_truncate_logits_refuses_widening():
    with pytest.raises(VocabAlignmentError, match="11.*10"):
        truncate_logits(torch.zeros(2, 10), 11)


def test_softmax_of_truncated_logits_sums_to_one():
    logits = torch.randn(4, 1064, dtype=torch.float32)
    p = torch.softmax(truncate_logits(logits, 936).double(), dim=-1)
    torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=torch.float64))
    assert torch.all(torch.softmax(logits.double(), -1)[:, :936].sum(-1) < 0.99)


# --- compare_tokenizers on synthetic lists ------------------------------------------------------


def tok(tokens, **changes) -> Tokenizer:
    base = Tokenizer(model="gpt2", pre="x", tokens=list(tokens), token_types=[1] * len(tokens), merges=["a b"])
    return dataclasses.replace(base, **changes)


def test_identical_lists_are_aligned_without_truncation():
    c = compare_tokenizers(tok("abcd"), tok("abcd"))
    assert (c.first_diff, c.student_is_teacher_prefix, c.truncated_rows, c.differing_keys) == (None, True, 0, ())
    require_shared_prefix(c)


def test_shorter_student_prefix_is_aligned_by_truncation():
    c = compare_tokenizers(tok("abcdef"), tok("abcd"))
    assert c.student_is_teacher_prefix and c.truncated_rows == 2
    assert (c.teacher_len, c.student_len) == (6, 4)
    require_shared_prefix(c)


def test_differing_token_is_reported_with_both_tokens():
    c = compare_tokenizers(tok("abcdef"), tok("abXd"))
    assert (c.first_diff, c.teacher_token, c.student_token) == (2, "c", "X")
    assert not c.student_is_teacher_prefix and c.truncated_rows is None
    with pytest.raises(VocabAlignmentError, match=r"index 2: teacher 'c', student 'X'"):
        require_shared_prefix(c)


def test_larger_student_is_refused_even_when_the_teacher_is_its_prefix():
    c = compare_tokenizers(tok("abc"), tok("abcde"))
    assert (c.first_diff, c.teacher_token, c.student_token) == (3, None, "d")
    with pytest.raises(VocabAlignmentError, match="student has 5 vocabulary rows, more than the teacher's 3"):
        require_shared_prefix(c)


def test_unpadded_list_compares_as_padded_to_its_rows():
    padded = tok(["a", "b", "[PAD2]", "[PAD3]"])
    c = compare_tokenizers(padded, tok("ab"), student_rows=4)
    assert c.student_is_teacher_prefix and c.student_len == 4 and c.truncated_rows == 0


def test_student_padding_against_a_real_teacher_token_is_a_difference():
    c = compare_tokenizers(tok("abcd"), tok("ab"), student_rows=3)
    assert (c.first_diff, c.teacher_token, c.student_token) == (2, "c", "[PAD2]")


def test_teacher_padding_against_a_real_student_token_is_a_difference():
    c = compare_tokenizers(tok("ab"), tok("abc"), teacher_rows=4)
    assert (c.first_diff, c.teacher_token, c.student_token) == (2, "[PAD2]", "c")


def test_rows_fewer_than_tokens_are_refused():
    with pytest.raises(VocabAlignmentError, match="teacher has 2 embedding rows but 3 tokens"):
        compare_tokenizers(tok("abc"), tok("ab"), teacher_rows=2)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"model": "llama"}, "tokenizer.ggml.model"),
        ({"pre": None}, "tokenizer.ggml.pre"),
        ({"merges": ["a c"]}, "tokenizer.ggml.merges"),
        ({"token_types": [1, 3, 1, 1]}, "tokenizer.ggml.token_type"),
        ({"extra": {"tokenizer.ggml.eos_token_id": 3}}, "tokenizer.ggml.eos_token_id"),
    ],
)
def test_other_tokenizer_keys_are_listed_not_refused(changes, key):
    c = compare_tokenizers(tok("abcd"), tok("abcd", **changes))
    assert c.differing_keys == (key,)
    assert c.student_is_teacher_prefix


def test_numeric_array_keys_are_compared_item_by_item():
    """A numeric metadata array is a numpy view of its file (distill.gguf_file): equal arrays agree."""
    scores = {"tokenizer.ggml.scores": np.array([0.0, -1.0, -2.0, -3.0], dtype=np.float32)}
    other = {"tokenizer.ggml.scores": np.array([0.0, -1.0, -2.5, -3.0], dtype=np.float32)}
    assert compare_tokenizers(tok("abcd", extra=scores), tok("abcd", extra=dict(scores))).differing_keys == ()
    assert compare_tokenizers(tok("abcd", extra=scores), tok("abcd", extra=other)).differing_keys == (
        "tokenizer.ggml.scores",)
    assert compare_tokenizers(tok("abcd", extra=scores), tok("abcd")).differing_keys == ("tokenizer.ggml.scores",)


def test_token_types_are_compared_on_the_shared_rows_only():
    teacher = tok("abcdef", token_types=[1, 1, 1, 1, 5, 5])
    assert compare_tokenizers(teacher, tok("abcd")).differing_keys == ()


# --- real vocabularies --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen2(vocab_dir):
    return read_tokenizer(vocab_dir / "ggml-vocab-qwen2.gguf")


@pytest.fixture(scope="module")
def llama_bpe(vocab_dir):
    return read_tokenizer(vocab_dir / "ggml-vocab-llama-bpe.gguf")


def test_qwen2_vs_llama_bpe_sizes_would_allow_truncation_but_tokens_differ(qwen2, llama_bpe):
    assert effective_vocab(len(qwen2), len(llama_bpe)) == 128256  # a size-only rule would accept
    c = compare_tokenizers(qwen2, llama_bpe)
    assert (c.teacher_len, c.student_len, c.first_diff) == (151936, 128256, 410)
    assert not c.student_is_teacher_prefix
    with pytest.raises(VocabAlignmentError) as err:
        require_shared_prefix(c)
    message = str(err.value)
    assert "410" in message and repr(qwen2.tokens[410]) in message and repr(llama_bpe.tokens[410]) in message


def test_qwen2_padded_teacher_aligns_with_qwen2_student_by_truncation(qwen2):
    c = compare_tokenizers(qwen2, qwen2, teacher_rows=152064)
    assert (c.teacher_len, c.student_len, c.first_diff, c.truncated_rows) == (152064, 151936, None, 128)
    require_shared_prefix(c)


def test_gpt_neox_vs_mpt_identical_lists_pass_without_truncation(vocab_dir):
    c = compare_vocabs(vocab_dir / "ggml-vocab-gpt-neox.gguf", vocab_dir / "ggml-vocab-mpt.gguf")
    assert (c.teacher_len, c.student_len, c.first_diff, c.truncated_rows) == (50432, 50432, None, 0)
    # Only the pre-tokenizer name differs (gpt-neox has none); tokens, merges and types are identical.
    assert c.differing_keys == ("tokenizer.ggml.pre",)
    require_shared_prefix(c)


# --- pv vocab-check -----------------------------------------------------------------------------


def test_cli_refuses_qwen2_vs_llama_bpe_with_exit_1(vocab_dir, capsys):
    code = pv_main(["vocab-check", str(vocab_dir / "ggml-vocab-qwen2.gguf"),
                    str(vocab_dir / "ggml-vocab-llama-bpe.gguf"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (report["teacher_len"], report["student_len"], report["first_diff"]) == (151936, 128256, 410)
    assert report["student_is_teacher_prefix"] is False


def test_cli_accepts_gpt_neox_vs_mpt_with_exit_0(vocab_dir, capsys):
    code = pv_main(["vocab-check", str(vocab_dir / "ggml-vocab-gpt-neox.gguf"),
                    str(vocab_dir / "ggml-vocab-mpt.gguf")])
    out = capsys.readouterr().out
    assert code == 0
    assert "aligned" in out and "no truncation" in out and "NOT" not in out


def test_cli_json_first_diff_is_null_when_aligned(vocab_dir, capsys):
    path = str(vocab_dir / "ggml-vocab-mpt.gguf")
    assert pv_main(["vocab-check", path, path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["first_diff"] is None and report["student_is_teacher_prefix"] is True


@pytest.mark.parametrize("kind", ["missing", "not-gguf", "truncated"])
def test_cli_read_errors_exit_2_with_a_message_naming_the_file(vocab_dir, tmp_path, capsys, kind):
    bad = tmp_path / f"{kind}.gguf"
    if kind == "not-gguf":
        bad.write_text("hello, not a model\n")
    elif kind == "truncated":
        bad.write_bytes((vocab_dir / "ggml-vocab-mpt.gguf").read_bytes()[:5000])
    code = pv_main(["vocab-check", str(vocab_dir / "ggml-vocab-mpt.gguf"), str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    assert str(bad) in captured.err and "Traceback" not in captured.err
    assert captured.out == ""

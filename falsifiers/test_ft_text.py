"""Falsifiers of distill-text-data-v1: the student's tokenizer against transformers' conversion of the
same GGUF file, text cut into pieces, documents packed, unknown pre-tokenizers refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sysconfig
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from distill import data, tokenizer
from distill.errors import DistillError, TokenizerError
from pv import cli

TOKENIZER = ["distill.tokenizer"]
PACKING = ["distill.data", "distill.tokenizer"]

#: standard-library sources present in every CPython 3.10+: prose, code, tables of non-ASCII characters
STDLIB_FILES = ("textwrap.py", "string.py", "json/decoder.py", "difflib.py", "html/entities.py",
                "encodings/cp1252.py", "locale.py")
MIXED = (
    "Grüße aus Köln! Ça va? ¿Qué tal? Привет, мир. Γειά σου κόσμε. 你好，世界。こんにちは世界。안녕하세요 세계.\n"
    "مرحبا بالعالم. नमस्ते दुनिया। שלום עולם. e\u0301 vs \u00e9, \u00a0nbsp\u2003em space\u200bzero-width.\n"
    "🎉🚀 👨\u200d👩\u200d👧\u200d👦 👍🏽 🇩🇪 ❤️\n"
    "digits 1 12 123 1234 12345 1234567890 3.14159e-10 0x1F 1,000,000 ٣٤٥ ১২৩\n"
    "    four spaces\t\ttwo tabs   \n\n\n\nthree blank lines\r\nCRLF line\r\n \n  trailing   \n"
    "DON'T we'll I'M they've She'd it's O'Neil's 'quoted' \"double\" `back` ``` fences ```\n"
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\t\tif x >= 0x10: pass\n"
)
#: the vocabulary's own control and user-defined tokens, read off the files with gguf's GGUFReader. The
#: llama-bpe text has no <|endoftext|>: transformers adds that token to any byte-level vocabulary, at an
#: id past the vocabulary's end (128256), which llama.cpp does not.
SPECIAL = {
    "qwen2": "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>[PAD151700] x[PAD151935]y",
    "llama-bpe": "<|begin_of_text|>hi<|end_of_text|> <|reserved_special_token_3|>z",
}
QWEN2_ENDOFTEXT = 151643


@cache
def _reference(path: Path):
    """transformers' conversion of the GGUF file's tokenizer (the independent implementation)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(path))
    backend, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    return backend


def _reference_ids(path: Path, text: str, parse_special: bool = True) -> list[int]:
    reference = _reference(path)
    reference.encode_special_tokens = not parse_special
    return reference.encode(text, add_special_tokens=False).ids


def _texts(name: str) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / file).read_text(encoding="utf-8") for file in STDLIB_FILES] + [MIXED, SPECIAL[name]]


#: mutants each vocabulary must detect: qwen2 has user-defined tokens and no multi-digit tokens,
#: llama-bpe has tokens of up to three digits and no user-defined tokens
COMMON = ["text-gpt2-regex", "text-prefix-space", "text-control-tokens-split", "text-merge-ranks-reversed"]


@pytest.mark.falsifies("FT-TEXT-001", covers=TOKENIZER, mutants=[*COMMON, "text-user-defined-split"])
def test_qwen2_ids_equal_transformers_conversion_of_the_gguf_tokenizer(vocab_dir: Path) -> None:
    _compare_with_transformers(vocab_dir, "qwen2")


@pytest.mark.falsifies("FT-TEXT-001", covers=TOKENIZER, mutants=[*COMMON, "text-llama-digits-one-by-one"])
def test_llama_bpe_ids_equal_transformers_conversion_of_the_gguf_tokenizer(vocab_dir: Path) -> None:
    _compare_with_transformers(vocab_dir, "llama-bpe")


def _compare_with_transformers(vocab_dir: Path, name: str) -> None:
    path = vocab_dir / f"ggml-vocab-{name}.gguf"
    ours = tokenizer.text_tokenizer(path)
    compared = 0
    for number, text in enumerate(_texts(name)):
        expected = _reference_ids(path, text)
        got = ours.encode(text, parse_special=True).tolist()
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        assert got == expected, f"text {number}: first difference at token {first}: {got[first:first + 5]} " \
                                f"against {expected[first:first + 5]}"
        compared += len(expected)
    assert compared > 80_000, compared  # 96850 tokens for qwen2, 90854 for llama-bpe (CPython 3.11's files)
    print(f"{name}: {compared} tokens equal to transformers'")


@pytest.mark.falsifies("FT-TEXT-002", covers=TOKENIZER, mutants=["text-cut-anywhere"])
def test_text_encoded_in_pieces_gives_the_ids_of_the_whole_text(vocab_dir: Path) -> None:
    path = vocab_dir / "ggml-vocab-qwen2.gguf"
    ours = tokenizer.text_tokenizer(path)
    for text in _texts("qwen2")[:3] + [MIXED]:
        assert ours.encode(text, piece_chars=64).tolist() == _reference_ids(path, text)


@pytest.mark.falsifies("FT-TEXT-003", covers=PACKING, mutants=[
    "pack-no-separator", "pack-separator-first", "pack-last-document-dropped", "data-control-tokens-parsed"])
def test_a_folder_packs_its_documents_in_order_each_followed_by_endoftext(vocab_dir: Path, tmp_path: Path) -> None:
    path = vocab_dir / "ggml-vocab-qwen2.gguf"
    documents = ["first file: plain text\n", "# Second\n\nMarkdown with a literal <|endoftext|> inside.\n",
                 "jsonl one: émoji 🎉", "jsonl two:\n\tindented 12345"]
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text(documents[0], encoding="utf-8")
    (folder / "b" / "c.md").write_text(documents[1], encoding="utf-8")
    (folder / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents[2:]), encoding="utf-8")
    (folder / ".hidden.txt").write_text("never read", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG never read")

    corpus = data.read_corpus(folder, tokenizer.read_tokenizer(path), str(path), 151936, seq=4)
    expected = [_reference_ids(path, d, parse_special=False) + [QWEN2_ENDOFTEXT] for d in documents]
    assert corpus.ids.tolist() == [i for d in expected for i in d]
    assert corpus.offsets.tolist() == torch.tensor([0] + [len(d) for d in expected]).cumsum(0).tolist()
    assert QWEN2_ENDOFTEXT not in expected[1][:-1]  # the literal stayed text


@pytest.mark.falsifies("FT-TEXT-004", covers=TOKENIZER, mutants=["text-unknown-pre-as-qwen2"])
@pytest.mark.parametrize("name, value", [("mpt", "'mpt'"), ("gpt-neox", "None")])
def test_an_unknown_pre_tokenizer_is_refused_naming_file_and_value(vocab_dir: Path, tmp_path: Path, capsys,
                                                                   name: str, value: str) -> None:
    path = vocab_dir / f"ggml-vocab-{name}.gguf"
    with pytest.raises(TokenizerError) as err:
        tokenizer.text_tokenizer(path)
    assert str(path) in str(err.value) and f"tokenizer.ggml.pre {value}" in str(err.value)
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    assert cli.main(["tokenize", str(path), str(text)]) == 2
    assert f"tokenizer.ggml.pre {value}" in capsys.readouterr().err


@pytest.mark.falsifies("FT-TEXT-004", covers=TOKENIZER, mutants=["text-unknown-pre-as-qwen2"])
def test_distilling_text_with_a_student_without_a_known_tokenizer_is_refused_before_any_file(
        model_file, tmp_path: Path, capsys) -> None:
    student = model_file("tiny-student")  # made without a vocabulary: tokenizer.ggml.pre 'default'
    text = tmp_path / "t.txt"
    text.write_text("some text to distil on\n" * 50, encoding="utf-8")
    out = tmp_path / "run"
    code = cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student", str(student),
                     "--data", str(text), "--steps", "1", "--out", str(out), "--no-progress"])
    assert code == 2 and not out.exists()
    assert f"{student}: tokenizer.ggml.pre 'default'" in capsys.readouterr().err


# --- FT-TEXT-005: every form of --data, and every bad data file refused by name ---------------------------

DATA = ["distill.data"]
QWEN2_ROWS = 151936


def _qwen2(vocab_dir: Path) -> tuple[Path, tokenizer.Tokenizer]:
    path = vocab_dir / "ggml-vocab-qwen2.gguf"
    return path, tokenizer.read_tokenizer(path)


def _refused(match: str, data_path: Path, tok: tokenizer.Tokenizer | None, source: str, rows: int = QWEN2_ROWS,
             seq: int = 4) -> None:
    with pytest.raises(DistillError, match=match):
        data.read_corpus(data_path, tok, source, rows, seq)


@pytest.mark.falsifies("FT-TEXT-005", covers=DATA, mutants=["data-ids-range-unchecked"])
def test_token_id_files_read_as_one_document_of_their_ids(vocab_dir: Path, tmp_path: Path) -> None:
    path, tok = _qwen2(vocab_dir)
    ids = np.array([5, 0, 1023, 7, 7, 12], dtype=np.int32)
    np.save(tmp_path / "ids.npy", ids)
    (tmp_path / "ids.txt").write_text("5 0\n1023\t7 7   12\n")
    for name in ("ids.npy", "ids.txt"):
        corpus = data.read_corpus(tmp_path / name, tok, str(path), 1024, seq=6)
        assert corpus.ids.dtype == torch.int64 and corpus.ids.tolist() == ids.tolist(), name
        assert corpus.offsets.tolist() == [0, 6] and corpus.separator is None and corpus.documents == 1
        digest = hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest()
        assert corpus.fingerprint() == f"6:{digest}"
        assert corpus.describe() == f"data: token ids from {tmp_path / name}: 1 document(s), 6 tokens"
    np.save(tmp_path / "floats.npy", ids.astype(np.float32))
    (tmp_path / "word.txt").write_text("5 0 x 7")
    (tmp_path / "neg.txt").write_text("5 0 -3 7")
    for name, match, rows, seq in (
            ("floats.npy", "floats.npy: token ids must be integers", 1024, 2),
            ("word.txt", "word.txt: cannot read token ids: .*a file whose first word is an integer", 1024, 2),
            ("ids.npy", "ids.npy: 6 token ids, fewer than one sequence of 7", 1024, 7),
            ("ids.npy", r"ids.npy: token id 1023 at position 2 is outside the vocabulary \[0, 1023\)", 1023, 2),
            ("neg.txt", r"neg.txt: token id -3 at position 2 is outside the vocabulary", 1024, 2)):
        _refused(match, tmp_path / name, tok, str(path), rows, seq)


@pytest.mark.falsifies("FT-TEXT-005", covers=DATA, mutants=["data-jsonl-blank-lines-kept"])
def test_text_and_jsonl_files_read_as_documents_and_bad_ones_are_refused_by_name(
        vocab_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, tok = _qwen2(vocab_dir)
    text = "def f(x):\n    return x  # one document\n"
    (tmp_path / "one.py").write_text(text, encoding="utf-8")
    corpus = data.read_corpus(tmp_path / "one.py", tok, str(path), QWEN2_ROWS, seq=4)
    expected = _reference_ids(path, text, parse_special=False) + [QWEN2_ENDOFTEXT]
    assert corpus.ids.tolist() == expected and corpus.documents == 1
    assert corpus.describe() == (f"data: text in {tmp_path / 'one.py'}: 1 document(s), {len(expected)} tokens, "
                                 f"each followed by the end-of-text token '<|endoftext|>' ({QWEN2_ENDOFTEXT})")
    (tmp_path / "docs.jsonl").write_text('{"text": "first"}\n\n   \n{"text": "second"}\n', encoding="utf-8")
    corpus = data.read_corpus(tmp_path / "docs.jsonl", tok, str(path), QWEN2_ROWS, seq=2)
    assert corpus.documents == 2 and corpus.ids.tolist() == [
        *_reference_ids(path, "first"), QWEN2_ENDOFTEXT, *_reference_ids(path, "second"), QWEN2_ENDOFTEXT]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "short.txt").write_text("hi", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "image.png").write_bytes(b"\x89PNG")
    for name, match, seq in (
            ("bad.jsonl", "bad.jsonl:2: expected a JSON object with a string field 'text'", 2),
            ("broken.jsonl", "broken.jsonl:2: not JSON", 2),
            ("latin1.txt", "latin1.txt: cannot read text", 2),
            ("short.txt", "short.txt: 2 tokens, fewer than one sequence of 3", 3),
            ("empty", "empty: no text files", 2)):
        _refused(match, tmp_path / name, tok, str(path), seq=seq)
    _refused("vocab.gguf has no tokenizer.ggml.tokens: it cannot tokenize", tmp_path / "one.py", None, "vocab.gguf")
    _refused(f"one.py: token id {max(expected)} of .* is outside the vocabulary \\[0, {max(expected)}\\)",
             tmp_path / "one.py", tok, str(path), rows=max(expected))
    monkeypatch.setattr(data, "MAX_TEXT_BYTES", 30)
    (tmp_path / "folder").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "folder" / name).write_text("x" * 20, encoding="utf-8")
    _refused("b.txt: the text data is over the limit of 30 bytes", tmp_path / "folder", tok, str(path))


@pytest.mark.falsifies("FT-TEXT-005", covers=DATA, mutants=["data-separator-defaults-to-zero"])
def test_the_separator_is_endoftext_else_eos_else_refused(vocab_dir: Path) -> None:
    llama = tokenizer.read_tokenizer(vocab_dir / "ggml-vocab-llama-bpe.gguf")
    eos = llama.extra[tokenizer.TOKENIZER_PREFIX + "eos_token_id"]
    assert "<|endoftext|>" not in llama.tokens
    assert data.separator_id(tokenizer.text_tokenizer_from(llama, "llama"), "llama") == eos
    without = dataclasses.replace(llama, extra={k: v for k, v in llama.extra.items() if not k.endswith("eos_token_id")})
    with pytest.raises(DistillError, match="no-eos: the vocabulary has no <|endoftext|> token and no"):
        data.separator_id(tokenizer.text_tokenizer_from(without, "no-eos"), "no-eos")


@pytest.mark.falsifies("FT-TEXT-005", covers=DATA, mutants=["data-stdlib-unsorted"])
def test_stdlib_is_the_standard_librarys_python_files_in_path_order_up_to_its_size(
        vocab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, tok = _qwen2(vocab_dir)
    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}  # the documented ones
    files = sorted(p for p in root.rglob("*.py")
                   if not skipped & set(p.relative_to(root).parts[:-1])
                   and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))
    texts, size = [], 0
    for file in files:  # the first files whose UTF-8 text fits in the first 40 000 bytes
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        size += len(text.encode("utf-8"))
        if size > 40_000:
            break
        texts.append(text)
    assert len(texts) >= 2, "the first standard-library files are larger than the test's budget"
    monkeypatch.setattr(data, "STDLIB_MAX_BYTES", 40_000)
    corpus = data.read_corpus(Path("stdlib"), tok, str(path), QWEN2_ROWS, seq=4)
    assert corpus.source == f"the Python standard library ({root})"
    expected = [_reference_ids(path, text, parse_special=False) + [QWEN2_ENDOFTEXT] for text in texts if text]
    assert corpus.documents == len(expected)
    assert corpus.ids.tolist() == [i for ids in expected for i in ids]

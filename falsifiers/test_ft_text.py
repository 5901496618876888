"""Falsifiers of distill-text-data-v1: the student's tokenizer against transformers' conversion of the
same GGUF file, text cut into pieces, documents packed, unknown pre-tokenizers refused."""

from __future__ import annotations

import json
import sysconfig
from functools import cache
from pathlib import Path

import pytest
import torch

from distill import data, tokenizer
from distill.errors import TokenizerError
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

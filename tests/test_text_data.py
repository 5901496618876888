"""Text data and pv tokenize: what --data accepts, its bounds and refusals, and the ids a run reads."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from distill import data, train
from distill.errors import DistillError
from distill.tokenizer import read_tokenizer
from pv import cli

#: ids read off the vocabulary files with gguf's GGUFReader: llama-bpe's BOS (llama.cpp puts it first
#: for its llama-bpe pre-tokenizer), qwen2's <|endoftext|>
LLAMA_BOS, QWEN2_ENDOFTEXT, QWEN2_ROWS = 128000, 151643, 151936
TEXT = "def add(a, b):\n    return a + b  # Grüße 🎉\n<|endoftext|>\n"
#: llama-bpe has no <|endoftext|> (transformers adds one past its last id, llama.cpp does not)
LLAMA_TEXT = TEXT.replace("<|endoftext|>", "<|end_of_text|>")


@cache
def _reference(path: Path):
    """transformers' conversion of a GGUF file's tokenizer: ids from an implementation written elsewhere."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(path))
    return convert_gguf_tokenizer(architecture, tokenizer_dict)[0]


def _reference_ids(path: Path, text: str, parse_special: bool) -> list[int]:
    reference = _reference(path)
    reference.encode_special_tokens = not parse_special
    return reference.encode(text, add_special_tokens=False).ids


def _tokenize(capsys, *argv: str) -> tuple[int, list[int] | None, str]:
    code = cli.main(["tokenize", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.py"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def llama_text_file(tmp_path: Path) -> Path:
    path = tmp_path / "llama.py"
    path.write_text(LLAMA_TEXT, encoding="utf-8")
    return path


@contextmanager
def _fed(fifo: Path) -> Iterator[None]:
    """While inside, a thread writes a few bytes to ``fifo`` whenever a reader opens it: code that reads
    the FIFO instead of refusing it gets its bytes (and the test fails) rather than waiting forever."""
    done = threading.Event()

    def feed() -> None:
        while not done.wait(0.01):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:  # ENXIO: nobody reads it yet
                if err.errno != errno.ENXIO:
                    return
                continue
            os.write(fd, b"1 2 3 4 5 6 7 8 9 text")
            os.close(fd)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --- pv tokenize ------------------------------------------------------------------------------------


def test_pv_tokenize_prints_the_ids_as_json_with_bos_where_the_vocabulary_asks(vocab_dir, text_file,
                                                                               llama_text_file, capsys):
    llama = vocab_dir / "ggml-vocab-llama-bpe.gguf"
    code, ids, _ = _tokenize(capsys, llama, llama_text_file)
    assert code == 0 and ids == [LLAMA_BOS] + _reference_ids(llama, LLAMA_TEXT, parse_special=True)
    assert _tokenize(capsys, llama, llama_text_file, "--no-bos")[1] == ids[1:]
    qwen2 = vocab_dir / "ggml-vocab-qwen2.gguf"
    code, ids, _ = _tokenize(capsys, qwen2, text_file)
    assert ids == _reference_ids(qwen2, TEXT, parse_special=True) and QWEN2_ENDOFTEXT in ids  # no BOS for qwen2


def test_pv_tokenize_no_parse_special_keeps_control_tokens_as_text(vocab_dir, text_file, capsys):
    qwen2 = vocab_dir / "ggml-vocab-qwen2.gguf"
    _, ids, _ = _tokenize(capsys, qwen2, text_file, "--no-parse-special")
    assert ids == _reference_ids(qwen2, TEXT, parse_special=False) and QWEN2_ENDOFTEXT not in ids


def test_pv_tokenize_refuses_bad_files_with_one_message(vocab_dir, text_file, tmp_path, capsys):
    qwen2 = vocab_dir / "ggml-vocab-qwen2.gguf"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Grüße".encode("latin-1"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv, message in [((qwen2, latin1), f"{latin1}: not UTF-8 text"),
                          ((qwen2, fifo), f"{fifo}: cannot read: not a regular file"),
                          ((qwen2, tmp_path / "none.txt"), "none.txt: cannot read"),
                          ((text_file, text_file), f"{text_file}: not a GGUF file")]:
        with _fed(fifo):
            code, _, err = _tokenize(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, err


# --- what --data reads ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen2_lists(vocab_dir):
    return read_tokenizer(vocab_dir / "ggml-vocab-qwen2.gguf")


def _corpus(path: Path, lists, seq: int = 4) -> data.Corpus:
    return data.read_corpus(path, lists, "student.gguf", QWEN2_ROWS, seq)


def test_a_text_file_is_one_document_and_an_integer_file_is_token_ids(tmp_path, qwen2_lists, vocab_dir):
    text = tmp_path / "notes.txt"
    text.write_text("Notes: 12 apples\n", encoding="utf-8")
    expected = _reference_ids(vocab_dir / "ggml-vocab-qwen2.gguf", "Notes: 12 apples\n", parse_special=False)
    assert _corpus(text, qwen2_lists).ids.tolist() == expected + [QWEN2_ENDOFTEXT]
    ids = tmp_path / "ids.txt"
    ids.write_text("12 7 3 99 5\n")
    assert _corpus(ids, qwen2_lists).ids.tolist() == [12, 7, 3, 99, 5]
    np.save(tmp_path / "ids.npy", np.array([[4, 5], [6, 7]]))
    assert _corpus(tmp_path / "ids.npy", qwen2_lists).ids.tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize("lines, message", [
    ('{"text": "a"}\n{"text": 3}\n', ":2: expected a JSON object with a string field 'text'"),
    ('{"text": "a"}\n\n{"text": "b"\n', ":3: not JSON"),
    ('["a"]\n', ":1: expected a JSON object"),
])
def test_bad_jsonl_names_the_file_and_line(tmp_path, qwen2_lists, lines, message):
    path = tmp_path / "docs.jsonl"
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(DistillError, match=message) as err:
        _corpus(path, qwen2_lists)
    assert str(path) in str(err.value)


def test_bad_text_inputs_are_refused_with_the_file_named(tmp_path, qwen2_lists, monkeypatch):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DistillError, match=f"{folder}: no text files"):
        _corpus(folder, qwen2_lists)
    (folder / "bad.txt").write_bytes("é".encode("latin-1"))
    with pytest.raises(DistillError, match=f"{folder / 'bad.txt'}: cannot read text"):
        _corpus(folder, qwen2_lists)
    short = tmp_path / "short.txt"
    short.write_text("hi", encoding="utf-8")
    with pytest.raises(DistillError, match="2 tokens, fewer than one sequence of 8"):
        _corpus(short, qwen2_lists, seq=8)
    with pytest.raises(DistillError, match="student.gguf has no tokenizer.ggml.tokens"):
        data.read_corpus(short, None, "student.gguf", QWEN2_ROWS, 1)
    big = tmp_path / "big.txt"
    big.write_text("word " * 300, encoding="utf-8")
    monkeypatch.setattr(data, "MAX_TEXT_BYTES", 1000)
    with pytest.raises(DistillError, match=f"{big}: 1500 bytes of text, over the limit of 1000 bytes"):
        _corpus(big, qwen2_lists)


def test_a_fifo_is_refused_and_one_in_a_folder_is_skipped(tmp_path, qwen2_lists):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with _fed(fifo), pytest.raises(DistillError, match="not a regular file"):
        _corpus(fifo, qwen2_lists)
    (tmp_path / "real.txt").write_text("a real document with enough words", encoding="utf-8")
    with _fed(fifo):
        assert _corpus(tmp_path, qwen2_lists).documents == 1


def test_the_stdlib_corpus_is_bounded_and_the_same_on_every_read(qwen2_lists, monkeypatch):
    monkeypatch.setattr(data, "STDLIB_MAX_BYTES", 60_000)
    first, second = _corpus(Path("stdlib"), qwen2_lists), _corpus(Path("stdlib"), qwen2_lists)
    assert first.documents >= 2 and first.fingerprint() == second.fingerprint()
    assert first.ids.numel() <= 60_000 + first.documents  # a byte-level token covers at least one byte
    assert (first.ids == QWEN2_ENDOFTEXT).sum() == first.documents


@pytest.fixture(scope="module")
def qwen2_model(vocab_dir, tmp_path_factory) -> Path:
    """A tiny Qwen2 GGUF with the real qwen2 tokenizer (teacher and student of the runs below)."""
    from distill.synth import make_model_file

    return Path(make_model_file(tmp_path_factory.mktemp("model") / "m.gguf", "tiny", "f32",
                                vocab_dir / "ggml-vocab-qwen2.gguf", seed=3))


def test_a_run_reads_windows_of_the_packed_text(vocab_dir, qwen2_model, tmp_path, monkeypatch):
    model = qwen2_model
    documents = ["first document, about apples\n", "second one: pears and 42 plums\n"]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    stream = [i for d in documents
              for i in _reference_ids(vocab_dir / "ggml-vocab-qwen2.gguf", d, False) + [QWEN2_ENDOFTEXT]]
    rows: list[list[int]] = []
    monkeypatch.setattr(train, "_step", lambda student, teacher, opt, ids, *a: rows.extend(ids.tolist()) or 1.0)
    lines: list[str] = []
    config = train.DistillConfig(out_dir=tmp_path / "run", teacher=model, student=model, steps=3, batch=2, seq=4,
                                 data=tmp_path / "docs.jsonl")
    train.run_distillation(config, echo=lines.append)
    windows = [stream[s : s + 4] for s in range(0, len(stream) - 3, 4)]
    assert len(rows) == 6 and all(row in windows for row in rows)
    assert any("2 document(s)" in line and f"'<|endoftext|>' ({QWEN2_ENDOFTEXT})" in line for line in lines)


def test_a_run_on_the_stdlib_corpus_completes(qwen2_model, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "STDLIB_MAX_BYTES", 60_000)
    monkeypatch.setattr(train, "_step", lambda *a: 1.0)
    config = train.DistillConfig(out_dir=tmp_path / "run", teacher=qwen2_model, student=qwen2_model, steps=2,
                                 batch=1, seq=4, data=Path("stdlib"), checkpoint_every=1)
    # the corpus is no file: the inputs watched through the run are the files among the run's inputs
    assert train.run_distillation(config, echo=lambda line: None).status == "completed"


def test_a_resume_on_changed_text_is_refused_naming_the_data(qwen2_model, tmp_path, monkeypatch):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "the first version of the text, long enough"}) + "\n")
    monkeypatch.setattr(train, "_step", lambda *a: 1.0)
    config = train.DistillConfig(out_dir=tmp_path / "run", teacher=qwen2_model, student=qwen2_model, steps=1,
                                 batch=1, seq=4, data=docs, checkpoint_every=1)
    train.run_distillation(config, echo=lambda line: None)
    docs.write_text(json.dumps({"text": "the second version of the text, long enough"}) + "\n")
    with pytest.raises(DistillError, match="differs from its checkpoint in .*data"):
        train.run_distillation(train.resume_config(tmp_path / "run", {"steps": 2}), echo=lambda line: None)

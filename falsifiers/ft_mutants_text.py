"""Planted defects of text tokenization and document packing (distill.tokenizer, distill.data),
registered with ``ft_mutants.mutant``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from tokenizers import pre_tokenizers

from ft_mutants import mutant, replace


def _built_from(mp: pytest.MonkeyPatch, change: Callable[[Any], Any]) -> None:
    """``text_tokenizer_from`` builds from ``change(tokenizer lists)`` instead of the file's lists."""
    replace(mp, "distill.tokenizer:text_tokenizer_from",
            lambda original: lambda tokenizer, source: original(change(tokenizer), source))


def _retyped(kind: int, to: int) -> Callable[[Any], Any]:
    return lambda t: dataclasses.replace(t, token_types=[to if k == kind else k for k in t.token_types])


def _after_build(mp: pytest.MonkeyPatch, change: Callable[[Any], None]) -> None:
    """``text_tokenizer_from`` returns its tokenizer after ``change(text_tokenizer)``."""

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def text_tokenizer_from(tokenizer: Any, source: str) -> Any:
            built = original(tokenizer, source)
            change(built)
            return built

        return text_tokenizer_from

    replace(mp, "distill.tokenizer:text_tokenizer_from", build)


# --- distill.tokenizer ----------------------------------------------------------------------------


@mutant("text-llama-digits-one-by-one", "llama-bpe splits digits one by one (qwen2's rule), not in groups of three")
def _llama_digits(mp: pytest.MonkeyPatch) -> None:
    from distill import tokenizer

    table = tokenizer.PRE_TOKENIZERS
    mp.setitem(table, "llama-bpe", dataclasses.replace(table["llama-bpe"], split=table["qwen2"].split))


@mutant("text-merge-ranks-reversed", "the merges are ranked from the end of tokenizer.ggml.merges")
def _merge_ranks_reversed(mp: pytest.MonkeyPatch) -> None:
    _built_from(mp, lambda t: dataclasses.replace(t, merges=t.merges[::-1]))


@mutant("text-gpt2-regex", "every vocabulary is split with GPT-2's regex (the ByteLevel default), not its own")
def _gpt2_regex(mp: pytest.MonkeyPatch) -> None:
    _after_build(mp, lambda built: setattr(built.bpe, "pre_tokenizer",
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)))


@mutant("text-prefix-space", "a space is put before the text, as sentencepiece-style converters do")
def _prefix_space(mp: pytest.MonkeyPatch) -> None:
    from distill import tokenizer

    byte_level = pre_tokenizers.ByteLevel
    mp.setattr(tokenizer, "pre_tokenizers", SimpleNamespace(
        Sequence=pre_tokenizers.Sequence, Split=pre_tokenizers.Split,
        ByteLevel=lambda **options: byte_level(**{**options, "add_prefix_space": True})))


@mutant("text-control-tokens-split", "control tokens (type 3) spelled in the text are cut into BPE pieces")
def _control_split(mp: pytest.MonkeyPatch) -> None:
    _built_from(mp, _retyped(3, 1))


@mutant("text-user-defined-split", "user-defined tokens (type 4) are cut into BPE pieces, not matched whole")
def _user_defined_split(mp: pytest.MonkeyPatch) -> None:
    _built_from(mp, _retyped(4, 1))


@mutant("text-cut-anywhere", "long texts are cut every piece_chars characters, inside lines and words")
def _cut_anywhere(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.tokenizer:text_pieces",
            lambda original: lambda text, size: [text[i : i + size] for i in range(0, len(text), size)] or [""])


@mutant("text-unknown-pre-as-qwen2", "an unknown tokenizer.ggml.pre falls back to qwen2's regex")
def _unknown_pre(mp: pytest.MonkeyPatch) -> None:
    from distill import tokenizer

    _built_from(mp, lambda t: t if t.pre in tokenizer.PRE_TOKENIZERS else dataclasses.replace(t, pre="qwen2"))


# --- distill.data ----------------------------------------------------------------------------------


def _pack_wrapper(mp: pytest.MonkeyPatch, body: Callable[..., Any]) -> None:
    replace(mp, "distill.data:_pack", lambda original: lambda documents, separator, token, source:
            body(original, documents, separator, token, source))


@mutant("pack-no-separator", "documents are concatenated without the end-of-text token")
def _pack_no_separator(mp: pytest.MonkeyPatch) -> None:
    def body(original: Callable[..., Any], documents: list, separator: int, token: str, source: str) -> Any:
        corpus = original(documents, separator, token, source)
        keep = corpus.ids != separator
        corpus.ids = corpus.ids[keep]
        return corpus

    _pack_wrapper(mp, body)


@mutant("pack-separator-first", "the end-of-text token is put before each document instead of after")
def _pack_separator_first(mp: pytest.MonkeyPatch) -> None:
    def body(original: Callable[..., Any], documents: list, separator: int, token: str, source: str) -> Any:
        corpus = original(documents, separator, token, source)
        corpus.ids = corpus.ids.roll(1)
        return corpus

    _pack_wrapper(mp, body)


@mutant("pack-last-document-dropped", "the last document is left out")
def _pack_last_dropped(mp: pytest.MonkeyPatch) -> None:
    _pack_wrapper(mp, lambda original, documents, separator, token, source:
                  original(documents[:-1], separator, token, source))


@mutant("data-control-tokens-parsed", "a control token spelled inside a document becomes its control id")
def _data_control_parsed(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.tokenizer:TextTokenizer.encode",
            lambda original: lambda self, text, parse_special=False, **kw: original(self, text, True, **kw))


@mutant("data-ids-range-unchecked", "token ids outside the vocabulary are read as they are")
def _ids_range_unchecked(mp: pytest.MonkeyPatch) -> None:
    import torch

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def read_token_file(path: Any, vocab_size: int, seq: int) -> Any:
            return original(path, 2**62, seq) if vocab_size > 0 else torch.zeros(0)

        return read_token_file

    replace(mp, "distill.data:read_token_file", build)


@mutant("data-stdlib-unsorted", "the standard library's files are read in the file system's order")
def _stdlib_unsorted(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.data:_stdlib_files", lambda original: lambda: sorted(original(), key=lambda p: p.name))


@mutant("data-jsonl-blank-lines-kept", "a blank JSONL line is read as an empty document")
def _jsonl_blank_lines_kept(mp: pytest.MonkeyPatch) -> None:
    import json

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def jsonl_documents(path: Any, budget: Any) -> Any:
            text = path.read_text(encoding="utf-8")
            return (json.loads(line)["text"] if line.strip() else " " for line in text.splitlines())

        return jsonl_documents

    replace(mp, "distill.data:_jsonl_documents", build)


@mutant("data-separator-defaults-to-zero", "a vocabulary without <|endoftext|> or EOS separates documents with id 0")
def _separator_defaults_to_zero(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def separator_id(tokenizer: Any, source: str) -> int:
            try:
                return original(tokenizer, source)
            except Exception:
                return 0

        return separator_id

    replace(mp, "distill.data:separator_id", build)

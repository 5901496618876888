"""The tokenizer of a GGUF file: its lists (``tokenizer.ggml.*``) and the byte-level BPE built from them.

A GGUF with ``tokenizer.ggml.model = gpt2`` describes a byte-level BPE: its
tokens are spelled in GPT-2's byte-to-character mapping, its merges are ranked
pairs, and ``tokenizer.ggml.pre`` names the pre-tokenizer, whose split regex
llama.cpp compiles in (src/llama-vocab.cpp) rather than storing it in the file.
``text_tokenizer`` builds that tokenizer with the ``tokenizers`` library:
the split regex of ``pre``, GPT-2's byte mapping, the ranked merges, the
control tokens (type 3) as special tokens matched whole in the text, and the
user-defined ones (type 4) as tokens always matched whole, as llama.cpp does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, models, pre_tokenizers

from distill.errors import GGUFFormatError, TokenizerError
from distill.gguf_file import read_header

TOKENIZER_PREFIX = "tokenizer.ggml."
#: Every tokenizer key starts so: ``tokenizer.ggml.*`` and others such as ``tokenizer.chat_template``.
TOKENIZER_KEYS = "tokenizer."


@dataclass
class Tokenizer:
    """The ``tokenizer.ggml.*`` metadata of a GGUF file.

    ``extra`` holds the other ``tokenizer.*`` keys (special token ids, flags,
    ``tokenizer.chat_template``...), by their full key.
    """

    model: str
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)


_TOKENIZER_FIELDS = {"model": "model", "pre": "pre", "tokens": "tokens", "token_type": "token_types", "merges": "merges"}


#: field -> (type, item type of a list or None) of the tokenizer keys read.
_FIELD_TYPES: dict[str, tuple[type, type | None]] = {
    "model": (str, None), "pre": (str, None), "tokens": (list, str), "token_type": (list, int), "merges": (list, str),
}


def tokenizer_from_metadata(path: Path, metadata: dict[str, Any]) -> Tokenizer:
    """Build a Tokenizer from parsed metadata; ``path`` names the file in errors."""
    for key in ("model", "tokens"):
        if TOKENIZER_PREFIX + key not in metadata:
            raise GGUFFormatError(f"{path}: required metadata key '{TOKENIZER_PREFIX}{key}' is missing")
    for key, (kind, item) in _FIELD_TYPES.items():
        value = metadata.get(TOKENIZER_PREFIX + key)
        if value is None and key not in ("model", "tokens"):
            continue
        if item is None:
            good = type(value) is kind
        elif item is int:  # a numeric array: a numpy view of the file (distill.gguf_file)
            good = isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu"
        else:
            good = isinstance(value, list) and all(type(entry) is item for entry in value)
        if not good:
            expected = kind.__name__ if item is None else f"a list of {item.__name__}"
            raise GGUFFormatError(f"{path}: metadata key '{TOKENIZER_PREFIX}{key}' is a"
                                  f" {type(value).__name__} of the wrong type, expected {expected}")
    tokens = metadata[TOKENIZER_PREFIX + "tokens"]
    token_types = metadata.get(TOKENIZER_PREFIX + "token_type", np.zeros(0, np.int32))
    if len(token_types) and len(token_types) != len(tokens):
        raise GGUFFormatError(
            f"{path}: '{TOKENIZER_PREFIX}token_type' has {len(token_types)} entries, "
            f"expected one per token ({len(tokens)})"
        )
    extra = {
        key: value
        for key, value in metadata.items()
        if key.startswith(TOKENIZER_KEYS) and key.removeprefix(TOKENIZER_PREFIX) not in _TOKENIZER_FIELDS
    }
    return Tokenizer(
        model=metadata[TOKENIZER_PREFIX + "model"],
        pre=metadata.get(TOKENIZER_PREFIX + "pre"),
        tokens=tokens,
        token_types=token_types.tolist(),  # one per token: as bounded as the token list
        merges=metadata.get(TOKENIZER_PREFIX + "merges", []),
        extra=extra,
    )


def read_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer lists of a GGUF file (vocabulary-only or a full model)."""
    header = read_header(path)
    return tokenizer_from_metadata(header.path, header.metadata)


#: GGUF token types (llama.cpp's ``llama_token_type``) that the text tokenizer matches whole.
CONTROL, USER_DEFINED = 3, 4


@dataclass(frozen=True)
class PreTokenizer:
    """What ``tokenizer.ggml.pre`` stands for in llama.cpp: the split regex and the BPE's options."""

    split: str
    ignore_merges: bool  # a pre-token that is itself a token is taken whole, without merging
    add_bos: bool  # the default of ``tokenizer.ggml.add_bos_token``


_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_REST = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

#: llama.cpp's pre-tokenizers by their ``tokenizer.ggml.pre`` name (src/llama-vocab.cpp).
PRE_TOKENIZERS = {
    "qwen2": PreTokenizer(_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + _REST,
                          ignore_merges=False, add_bos=False),
    "llama-bpe": PreTokenizer(_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}" + _REST,
                              ignore_merges=True, add_bos=True),
}

#: A place after which no pre-token continues: a line break followed by a character that is not whitespace.
_SAFE_CUT = re.compile(r"[\r\n](?=\S)")

#: Characters of text encoded in one call: longer texts are cut where no pre-token can span the cut.
ENCODE_PIECE_CHARS = 1 << 20


@dataclass
class TextTokenizer:
    """A GGUF file's byte-level BPE (see the module docstring); ``source`` names the file in messages."""

    bpe: tokenizers.Tokenizer
    source: str
    tokens: list[str]
    bos_id: int | None
    eos_id: int | None
    add_bos: bool

    def encode(self, text: str, parse_special: bool = False, add_bos: bool = False,
               piece_chars: int = ENCODE_PIECE_CHARS) -> np.ndarray:
        """The token ids of ``text``, int64.

        ``parse_special``: control tokens spelled in the text (``<|endoftext|>``) become
        their ids, as llama.cpp's tokenizer does by default; otherwise they are plain text.
        ``add_bos``: start with the BOS token when the file asks for one (``self.add_bos``).
        Text is encoded ``piece_chars`` characters at a time (bounded memory).
        """
        self.bpe.encode_special_tokens = not parse_special
        parts = [np.array([self.bos_id], dtype=np.int64)] if add_bos and self.add_bos and self.bos_id is not None else []
        for piece in text_pieces(text, piece_chars):
            parts.append(np.array(self.bpe.encode(piece, add_special_tokens=False).ids, dtype=np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def token_id(self, token: str) -> int | None:
        """The id of the token spelled ``token`` (None when the vocabulary has none)."""
        return self.bpe.token_to_id(token)


def text_pieces(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of about ``size`` characters or more, whose tokens are the text's tokens.

    A cut falls only after a run of line breaks followed by a character that is not
    whitespace: each pre-tokenizer above ends a pre-token there. A text with no such
    place stays whole.
    """
    pieces, start = [], 0
    while len(text) - start > size:
        found = _SAFE_CUT.search(text, start + size - 1)
        if found is None:
            break
        pieces.append(text[start : found.end()])
        start = found.end()
    pieces.append(text[start:])
    return pieces


def text_tokenizer_from(tokenizer: Tokenizer, source: str) -> TextTokenizer:
    """The byte-level BPE described by ``tokenizer`` (read from ``source``, named in errors)."""
    if tokenizer.model != "gpt2":
        raise TokenizerError(f"{source}: tokenizer.ggml.model is {tokenizer.model!r}; only byte-level BPE "
                             "('gpt2') can tokenize text here")
    pre = PRE_TOKENIZERS.get(tokenizer.pre)
    if pre is None:
        raise TokenizerError(f"{source}: tokenizer.ggml.pre {tokenizer.pre!r} is not a known pre-tokenizer; "
                             f"known: {', '.join(PRE_TOKENIZERS)}")
    if not tokenizer.merges:
        raise TokenizerError(f"{source}: tokenizer.ggml.merges is empty: no BPE to tokenize text with")
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokenizer.tokens):
        vocab.setdefault(token, index)
    merges = []
    for line, merge in enumerate(tokenizer.merges):
        pair = merge.split(" ")
        if len(pair) != 2:
            raise TokenizerError(f"{source}: tokenizer.ggml.merges[{line}] is {merge!r}, not two tokens "
                                 "separated by one space")
        merges.append((pair[0], pair[1]))
    try:
        bpe = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre.ignore_merges))
    except Exception as err:  # the library names the merge whose tokens are missing
        raise TokenizerError(f"{source}: the tokens and merges do not make a BPE: {err}") from None
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pre.split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    types = tokenizer.token_types or []
    bpe.add_special_tokens([AddedToken(token, normalized=False, special=True)
                            for token, kind in zip(tokenizer.tokens, types) if kind == CONTROL])
    bpe.add_tokens([AddedToken(token, normalized=False, special=False)
                    for token, kind in zip(tokenizer.tokens, types) if kind == USER_DEFINED])
    bos, eos = (tokenizer.extra.get(TOKENIZER_PREFIX + key) for key in ("bos_token_id", "eos_token_id"))
    add_bos = tokenizer.extra.get(TOKENIZER_PREFIX + "add_bos_token", pre.add_bos)
    return TextTokenizer(bpe, source, tokenizer.tokens, bos if isinstance(bos, int) else None,
                         eos if isinstance(eos, int) else None, bool(add_bos))


def text_tokenizer(path: str | Path) -> TextTokenizer:
    """The byte-level BPE of a GGUF file (vocabulary-only or a full model)."""
    return text_tokenizer_from(read_tokenizer(path), str(path))

"""The tokenizer lists of a GGUF file (``tokenizer.ggml.*``), vocabulary-only or a full model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import GGUFFormatError
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

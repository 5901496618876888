"""Print the token ids of a text file as a JSON list, tokenized with a GGUF file's own tokenizer.

The tokenizer is the byte-level BPE the GGUF describes (tokenizer.ggml.tokens,
merges, token_type and the pre-tokenizer named by tokenizer.ggml.pre). As
llama.cpp's llama-tokenize does by default, control tokens spelled in the text
(such as <|endoftext|>) become their ids, and the BOS token comes first when
the vocabulary asks for one; --no-parse-special and --no-bos turn these off.
Exit 0 on success, 2 when a file cannot be read or its tokenizer is not supported.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

from pv._util.errors import UserError

#: Largest text file tokenized, in bytes.
MAX_TEXT_BYTES = 256 * 1024**2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.gguf", help="GGUF file whose tokenizer is used")
    parser.add_argument("file", type=Path, metavar="FILE", help="UTF-8 text file to tokenize")
    parser.add_argument("--no-parse-special", action="store_true",
                        help="tokenize control tokens spelled in the text as plain text")
    parser.add_argument("--no-bos", action="store_true", help="never put the BOS token first")


def _read_text(path: Path) -> str:
    try:
        info = os.stat(path)
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: cannot read: not a regular file")
    if info.st_size > MAX_TEXT_BYTES:
        raise UserError(f"{path}: {info.st_size} bytes, over the limit of {MAX_TEXT_BYTES}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:
    from distill.errors import DistillError
    from distill.tokenizer import text_tokenizer

    text = _read_text(args.file)
    try:
        tokenizer = text_tokenizer(args.model)
    except DistillError as err:
        raise UserError(str(err)) from None
    ids = tokenizer.encode(text, parse_special=not args.no_parse_special, add_bos=not args.no_bos)
    print(json.dumps(ids.tolist()))
    return 0

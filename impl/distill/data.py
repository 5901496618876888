"""Training data: token files and text, and the seeded stream of rows a run reads, which can be saved and resumed.

What ``--data`` names (``read_corpus``):
- ``stdlib``: the Python standard library's own source files (``*.py`` under
  ``sysconfig.get_paths()["stdlib"]``, tests and site-packages left out), in
  path order, the first :data:`STDLIB_MAX_BYTES` bytes of them: a corpus of code
  present on every machine;
- a folder: its text files (``TEXT_SUFFIXES``, hidden ones left out), in path order;
- a ``.jsonl`` file: one JSON object per line, its string ``text`` a document;
- a ``.npy`` file, or a file whose first word is an integer: token ids
  (``read_token_file``), already tokenized, one document;
- any other file: one text document.

Text is tokenized with the student's own GGUF tokenizer
(``distill.tokenizer.text_tokenizer_from``; control tokens spelled in the text
stay text). Documents are packed: each is followed by the end-of-text token
(:func:`separator_id`: the token ``<|endoftext|>``, else the file's EOS
token) and all are concatenated into one stream of ids (``Corpus``), from
which the stream below cuts its rows.

A run reads *rows* of ``seq`` token ids. Optimizer step ``t`` takes the global
rows ``[t*G, (t+1)*G)`` of the stream, ``G = batch * grad_accum * world_size``;
rank ``r`` takes the slice ``[r*batch*grad_accum, (r+1)*batch*grad_accum)`` of
them and micro-batch ``k`` the ``k``-th ``batch`` rows of its slice
(``shard_slice``). So 2 ranks of batch b read the same rows as 1 rank of batch
2b, and K micro-batches of b the same rows as one batch of K*b.

The stream (``TokenStream``):
- from a token file: the ids are cut into ``len(ids) // seq`` windows of
  ``seq`` consecutive ids; each epoch visits every window once, in an order
  drawn from a generator seeded with ``seed``;
- without a file: uniformly random ids from that generator.

Its state (``state_dict``) is the generator's state at the start of the
current epoch (file) or now (random ids) and the *position*, the number of
rows read; ``load_state_dict`` continues exactly where the saved stream was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.errors import DistillError
from distill.inputs import MAX_READ_BYTES, open_input, read_input
from distill.tokenizer import TOKENIZER_PREFIX, TextTokenizer, Tokenizer, text_tokenizer_from

#: What a contract may bind here (the pure functions and the limits the contracts check); see pv's binding rule.
__pv_bindable__ = ("split_documents", "MAX_TOKEN_FILE_BYTES", "MAX_TEXT_BYTES", "STDLIB_MAX_BYTES")

#: Largest token file read, in bytes (a text file's ids are parsed in memory).
MAX_TOKEN_FILE_BYTES = 2 * 1024**3
#: Largest amount of text read for one run, in bytes, over all its files.
MAX_TEXT_BYTES = 512 * 1024**2
#: The ``--data`` value that names the Python standard library's source files.
STDLIB_CORPUS = "stdlib"
#: Bytes of standard-library source read for ``--data stdlib`` (about a million tokens).
STDLIB_MAX_BYTES = 4 * 1024**2
#: Folders of the standard library left out of its corpus.
STDLIB_SKIPPED = ("site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__")
#: The files of a folder read as text documents.
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py")
#: The token put after each document, by its spelling, when the vocabulary has it.
END_OF_TEXT = "<|endoftext|>"
_INTEGER = re.compile(rb"\s*-?[0-9]+(\s|$)")


@dataclass
class Corpus:
    """The token ids a run reads: its documents packed into one stream.

    Document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``, its end-of-text token
    ``separator`` last (None for a token-id file, one document with no separator).
    """

    ids: torch.Tensor
    offsets: torch.Tensor
    separator: int | None
    source: str
    separator_token: str | None = None

    @property
    def documents(self) -> int:
        return self.offsets.numel() - 1

    def fingerprint(self) -> str:
        """``count:sha256`` of the ids: what makes two runs read the same data."""
        return f"{self.ids.numel()}:{hashlib.sha256(self.ids.numpy().tobytes()).hexdigest()}"

    def describe(self) -> str:
        """One line naming the data, its size and its separator."""
        line = f"data: {self.source}: {self.documents} document(s), {self.ids.numel()} tokens"
        if self.separator is not None:
            line += f", each followed by the end-of-text token {self.separator_token!r} ({self.separator})"
        return line


def read_token_file(path: Path, vocab_size: int, seq: int) -> torch.Tensor:
    """The ids of a ``.npy`` or whitespace-separated text file as a flat int64 tensor, checked.

    A path that is not a regular file (a device such as /dev/zero, a FIFO) or a file over
    :data:`MAX_TOKEN_FILE_BYTES` is refused before anything is read.
    """
    import io

    import numpy as np

    content = read_input(path, "token ids", MAX_TOKEN_FILE_BYTES)
    try:
        if path.suffix == ".npy":
            array = np.load(io.BytesIO(content), allow_pickle=False)
            if not np.issubdtype(array.dtype, np.integer):
                raise DistillError(f"{path}: token ids must be integers, got dtype {array.dtype}")
            ids = torch.from_numpy(array.astype(np.int64).reshape(-1))
        else:
            words = content.decode("utf-8").split()
            ids = torch.tensor([int(word) for word in words], dtype=torch.int64)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        hint = "" if path.suffix == ".npy" else (" (a file whose first word is an integer is read as token ids; "
                                                 "give text that starts with a number as JSONL)")
        raise DistillError(f"{path}: cannot read token ids: {err}{hint}") from None
    if ids.numel() < seq:
        raise DistillError(f"{path}: {ids.numel()} token ids, fewer than one sequence of {seq}")
    bad = ((ids < 0) | (ids >= vocab_size)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise DistillError(f"{path}: token id {int(ids[i])} at position {i} is outside the vocabulary [0, {vocab_size})")
    return ids


def separator_id(tokenizer: TextTokenizer, source: str) -> int:
    """The end-of-text token put after each document: ``<|endoftext|>``, else the file's EOS token."""
    found = tokenizer.token_id(END_OF_TEXT)
    if found is None:
        found = tokenizer.eos_id
    if found is None:
        raise DistillError(f"{source}: the vocabulary has no {END_OF_TEXT} token and no "
                           f"{TOKENIZER_PREFIX}eos_token_id to separate documents with")
    return found


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in STDLIB_SKIPPED and not d.startswith("."))
        files += [Path(folder) / name for name in names if name.endswith(".py")]
    return sorted(files)


def _folder_files(folder: Path) -> list[Path]:
    files = []
    for parent, subfolders, names in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in names:
            path = Path(parent) / name
            if name.endswith(TEXT_SUFFIXES + (".jsonl",)) and not name.startswith(".") and path.is_file():
                files.append(path)
    if not files:
        raise DistillError(f"{folder}: no text files ({', '.join(TEXT_SUFFIXES + ('.jsonl',))}) in the folder")
    return sorted(files)


class _TextBudget:
    """Refuses text beyond ``limit`` bytes in all, naming the file that went over."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, path: Path, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise DistillError(f"{path}: the text data is over the limit of {self.limit} bytes")


def _read_text(path: Path, budget: _TextBudget) -> str:
    content = read_input(path, "text", budget.limit)
    budget.take(path, len(content))
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DistillError(f"{path}: cannot read text: {err}") from None


def _jsonl_documents(path: Path, budget: _TextBudget) -> Iterator[str]:
    for number, line in enumerate(_read_text(path, budget).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DistillError(f"{path}:{number}: not JSON: {err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DistillError(f"{path}:{number}: expected a JSON object with a string field 'text'")
        yield record["text"]


def _looks_like_ids(path: Path) -> bool:
    """Whether a file's first word is an integer: a file of token ids, not text."""
    with open_input(path, "data", MAX_READ_BYTES) as fh:
        return _INTEGER.match(fh.read(64)) is not None


def _stdlib_documents() -> Iterator[str]:
    size = 0
    for path in _stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # a few test inputs are deliberately not UTF-8
            continue
        size += len(text.encode("utf-8"))
        if size > STDLIB_MAX_BYTES:
            return
        yield text


def _text_documents(data: Path) -> tuple[str, Iterator[str]]:
    """What the text data is, and its documents, read one at a time within :data:`MAX_TEXT_BYTES`."""
    budget = _TextBudget(MAX_TEXT_BYTES)
    if str(data) == STDLIB_CORPUS:
        return f"the Python standard library ({sysconfig.get_paths()['stdlib']})", _stdlib_documents()
    if data.is_dir():
        files = _folder_files(data)
        return f"text files in {data}", (document for path in files for document in (
            _jsonl_documents(path, budget) if path.suffix == ".jsonl" else [_read_text(path, budget)]))
    if data.suffix == ".jsonl":
        return f"JSONL documents in {data}", _jsonl_documents(data, budget)
    return f"text in {data}", iter([_read_text(data, budget)])


def _pack(documents: list[torch.Tensor], separator: int, separator_token: str, source: str) -> Corpus:
    """The documents (ids without a separator) concatenated, each followed by ``separator``."""
    end = torch.tensor([separator], dtype=torch.int64)
    parts = [part for document in documents for part in (document, end)]
    lengths = torch.tensor([0] + [d.numel() + 1 for d in documents], dtype=torch.int64)
    ids = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    return Corpus(ids, lengths.cumsum(0), separator, source, separator_token)


def read_corpus(data: Path, tokenizer: Tokenizer | None, tokenizer_source: str, vocab_size: int, seq: int) -> Corpus:
    """The packed token ids of ``data`` (see the module docstring), each id checked to be below ``vocab_size``.

    Text is tokenized with ``tokenizer`` (the student's, read from ``tokenizer_source``).
    """
    data = Path(data)
    if str(data) != STDLIB_CORPUS and not data.is_dir() and (data.suffix == ".npy" or (
            data.suffix != ".jsonl" and _looks_like_ids(data))):
        ids = read_token_file(data, vocab_size, seq)
        return Corpus(ids, torch.tensor([0, ids.numel()]), None, f"token ids from {data}")
    if tokenizer is None:
        raise DistillError(f"{tokenizer_source} has no tokenizer.ggml.tokens: it cannot tokenize {data}")
    text = text_tokenizer_from(tokenizer, tokenizer_source)
    separator = separator_id(text, tokenizer_source)
    source, documents = _text_documents(data)
    encoded = (torch.from_numpy(text.encode(document)) for document in documents)
    corpus = _pack([ids for ids in encoded if ids.numel()], separator, text.tokens[separator], source)
    if corpus.ids.numel() < seq:
        raise DistillError(f"{data}: {corpus.ids.numel()} tokens, fewer than one sequence of {seq}")
    if int(corpus.ids.max()) >= vocab_size:
        raise DistillError(f"{data}: token id {int(corpus.ids.max())} of {tokenizer_source}'s tokenizer is outside "
                           f"the vocabulary [0, {vocab_size})")
    return corpus


class TokenStream:
    """The seeded, resumable stream of [seq] rows of a run (see the module docstring)."""

    def __init__(self, ids: torch.Tensor | None, vocab_size: int, seq: int, seed: int) -> None:
        self.ids, self.vocab_size, self.seq = ids, vocab_size, seq
        self.windows = None if ids is None else ids.numel() // seq
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0
        self._epoch_state = self.generator.get_state()
        self._order: torch.Tensor | None = None

    def _window_order(self) -> torch.Tensor:
        """The window order of the current epoch, drawn when the epoch starts."""
        if self._order is None:
            self._epoch_state = self.generator.get_state()
            self._order = torch.randperm(self.windows, generator=self.generator)
        return self._order

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` global rows, [count, seq] int64."""
        if self.ids is None:
            self.position += count
            return torch.randint(0, self.vocab_size, (count, self.seq), generator=self.generator)
        starts = []
        for _ in range(count):
            offset = self.position % self.windows
            starts.append(int(self._window_order()[offset]) * self.seq)
            self.position += 1
            if offset == self.windows - 1:  # the epoch is over: the next row draws a new order
                self._order = None
        if not starts:
            return torch.empty((0, self.seq), dtype=torch.int64)
        return torch.stack([self.ids[s : s + self.seq] for s in starts])

    def state_dict(self) -> dict[str, Any]:
        """What ``load_state_dict`` needs to continue this stream exactly."""
        if self.ids is not None and self._order is not None:
            generator = self._epoch_state  # the order of the current epoch is drawn again from it
        else:
            generator = self.generator.get_state()
        return {"position": self.position, "generator": generator.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved ``state_dict``."""
        self.generator.set_state(state["generator"])
        self.position = int(state["position"])
        self._order = None
        if self.ids is not None and self.position % self.windows:
            self._window_order()  # inside an epoch: its order again, from the state at its start


def shard_slice(rank: int, batch: int, grad_accum: int, micro: int) -> slice:
    """The rows of micro-batch ``micro`` of ``rank`` within one step's global rows."""
    start = (rank * grad_accum + micro) * batch
    return slice(start, start + batch)



def split_documents(n_documents: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The training and held-out document indices (each sorted) of ``n_documents``, fixed by ``seed``.

    ``round(fraction * n_documents)`` documents, at least one, are held out: the
    first ones of a permutation drawn from a generator seeded with ``seed`` (its
    own, not the training stream's). At least one document stays for training.
    """
    if isinstance(fraction, bool) or not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise DistillError(f"the held-out fraction must be a number in (0, 1), got {fraction!r}")
    held = max(1, round(fraction * n_documents))
    if n_documents < 2 or held >= n_documents:
        raise DistillError(f"cannot hold out {fraction:g} of {n_documents} document(s) and keep one for training; "
                           "give more data or a smaller held-out fraction")
    order = torch.randperm(n_documents, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held:]), sorted(order[:held])


def disjoint_training(rows: torch.Tensor, held: list[int]) -> list[int]:
    """The windows of ``rows`` [n, seq] that training reads when ``held`` are held out: every other window
    whose ids equal no held-out window's. A window repeated in the data (a licence header, boilerplate) is
    held out wherever it occurs, so the evaluation never scores a row the student was trained on."""
    listed = rows.tolist()
    held_rows = {tuple(listed[index]) for index in held}
    held_set = set(held)
    return [index for index, row in enumerate(listed) if index not in held_set and tuple(row) not in held_rows]


def windows(ids: torch.Tensor, seq: int) -> torch.Tensor:
    """The ``seq``-id windows of a token file's ids, [len(ids) // seq, seq] (a trailing part is dropped)."""
    count = ids.numel() // seq
    return ids[: count * seq].view(count, seq)

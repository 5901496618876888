"""Training data: token files, and the seeded stream of rows a run reads, which can be saved and resumed.

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

import os
import stat
from pathlib import Path
from typing import Any

import torch

from distill.errors import DistillError

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("split_documents",)

#: Largest token file read, in bytes (a text file's ids are parsed in memory).
MAX_TOKEN_FILE_BYTES = 2 * 1024**3


def read_token_file(path: Path, vocab_size: int, seq: int) -> torch.Tensor:
    """The ids of a ``.npy`` or whitespace-separated text file as a flat int64 tensor, checked.

    A path that is not a regular file (a device such as /dev/zero, a FIFO) or a file over
    :data:`MAX_TOKEN_FILE_BYTES` is refused before anything is read.
    """
    import numpy as np

    try:
        info = os.stat(path)
    except OSError as err:
        raise DistillError(f"{path}: cannot read token ids: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DistillError(f"{path}: cannot read token ids: not a regular file")
    if info.st_size > MAX_TOKEN_FILE_BYTES:
        raise DistillError(f"{path}: {info.st_size} bytes of token ids, over the limit of {MAX_TOKEN_FILE_BYTES}")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if not np.issubdtype(array.dtype, np.integer):
                raise DistillError(f"{path}: token ids must be integers, got dtype {array.dtype}")
            ids = torch.from_numpy(array.astype(np.int64).reshape(-1))
        else:
            words = path.read_text(encoding="utf-8").split()
            ids = torch.tensor([int(word) for word in words], dtype=torch.int64)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read token ids: {err}") from None
    if ids.numel() < seq:
        raise DistillError(f"{path}: {ids.numel()} token ids, fewer than one sequence of {seq}")
    bad = ((ids < 0) | (ids >= vocab_size)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise DistillError(f"{path}: token id {int(ids[i])} at position {i} is outside the vocabulary [0, {vocab_size})")
    return ids


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

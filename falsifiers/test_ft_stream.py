"""Falsifiers of distill-training-v1's data stream (FT-TRAIN-010): each window once per epoch in a seeded
order, and a stream restored from its state reads what the original reads next."""

from __future__ import annotations

import pytest
import torch

from distill.data import TokenStream

WINDOWS, SEQ, VOCAB = 7, 3, 50
STREAM = ["distill.data:TokenStream"]


def _ids() -> torch.Tensor:
    """7 windows of 3 ids, each window distinct, and one id past the last window (dropped)."""
    return torch.arange(WINDOWS * SEQ + 1, dtype=torch.int64)


def _rows(stream: TokenStream, count: int) -> list[tuple[int, ...]]:
    return [tuple(row) for row in stream.take(count).tolist()]


@pytest.mark.falsifies("FT-TRAIN-010", covers=STREAM, mutants=["stream-epoch-order-repeated"])
def test_each_epoch_reads_every_window_once_in_a_seeded_order() -> None:
    windows = {tuple(range(w * SEQ, (w + 1) * SEQ)) for w in range(WINDOWS)}
    stream = TokenStream(_ids(), VOCAB, SEQ, seed=3)
    epochs = [_rows(stream, WINDOWS) for _ in range(3)]
    for epoch in epochs:
        assert len(epoch) == WINDOWS and set(epoch) == windows, epoch
    assert len({tuple(epoch) for epoch in epochs}) == 3, "the epochs repeat one order"
    assert _rows(TokenStream(_ids(), VOCAB, SEQ, seed=3), WINDOWS) == epochs[0], "the order is not the seed's"
    assert _rows(TokenStream(_ids(), VOCAB, SEQ, seed=4), WINDOWS) != epochs[0], "the order ignores the seed"
    empty = stream.take(0)
    assert empty.shape == (0, SEQ) and empty.dtype == torch.int64
    assert stream.position == 3 * WINDOWS
    random_rows = TokenStream(None, VOCAB, SEQ, seed=3).take(40)
    assert random_rows.shape == (40, SEQ) and 0 <= int(random_rows.min()) and int(random_rows.max()) < VOCAB


@pytest.mark.falsifies("FT-TRAIN-010", covers=STREAM, mutants=["stream-state-at-position-zero"])
def test_a_stream_restored_from_its_state_reads_what_the_original_reads_next() -> None:
    for position in range(3 * WINDOWS + 1):
        original = TokenStream(_ids(), VOCAB, SEQ, seed=5)
        original.take(position)
        restored = TokenStream(_ids(), VOCAB, SEQ, seed=99)
        restored.load_state_dict(original.state_dict())
        assert restored.position == position
        assert _rows(restored, 2 * WINDOWS) == _rows(original, 2 * WINDOWS), position
    for seed in (5, 6):  # random ids: the generator's state carries the stream too
        original = TokenStream(None, VOCAB, SEQ, seed=seed)
        original.take(4)
        restored = TokenStream(None, VOCAB, SEQ, seed=0)
        restored.load_state_dict(original.state_dict())
        assert torch.equal(restored.take(5), original.take(5))

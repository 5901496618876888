"""The token stream of a run: epochs over a file's windows, exact continuation from a saved state, shards."""

from __future__ import annotations

import pytest
import torch

from distill.data import TokenStream, shard_slice
from distill.parallel import World
from distill.train import StepPlan

WINDOWS, SEQ = 6, 5


def _ids() -> torch.Tensor:
    return torch.arange(WINDOWS * SEQ + 3)  # 3 ids beyond the last whole window are never read


def test_each_epoch_reads_every_window_once_in_a_new_order() -> None:
    stream = TokenStream(_ids(), 1000, SEQ, seed=3)
    epochs = [stream.take(WINDOWS) for _ in range(3)]
    for rows in epochs:
        starts = sorted(int(row[0]) for row in rows)
        assert starts == [SEQ * w for w in range(WINDOWS)]
        assert all(row.tolist() == list(range(int(row[0]), int(row[0]) + SEQ)) for row in rows)
    assert len({tuple(rows[:, 0].tolist()) for rows in epochs}) > 1


@pytest.mark.parametrize("with_file", [True, False])
@pytest.mark.parametrize("before", [0, 2, 6, 7, 13])
def test_a_stream_loaded_from_a_saved_state_continues_exactly(with_file: bool, before: int) -> None:
    ids = _ids() if with_file else None
    original = TokenStream(ids, 1000, SEQ, seed=4)
    original.take(before)
    state = original.state_dict()
    expected = original.take(11)
    resumed = TokenStream(ids, 1000, SEQ, seed=4)
    resumed.load_state_dict(state)
    assert resumed.position == before
    assert torch.equal(resumed.take(11), expected)


def test_a_fresh_stream_differs_from_a_resumed_one_inside_a_later_epoch() -> None:
    """What makes the generator state matter: the order of epoch 2 is not the order of epoch 0."""
    original = TokenStream(_ids(), 1000, SEQ, seed=4)
    original.take(2 * WINDOWS + 1)
    state = original.state_dict()
    fresh = TokenStream(_ids(), 1000, SEQ, seed=4)
    fresh.load_state_dict({**state, "generator": torch.Generator().manual_seed(4).get_state()})
    assert not torch.equal(fresh.take(WINDOWS), original.take(WINDOWS))


@pytest.mark.parametrize("ranks, accum, batch", [(1, 1, 6), (2, 1, 3), (1, 3, 2), (2, 3, 1), (3, 2, 1)])
def test_shards_of_ranks_and_micro_batches_partition_the_step(ranks: int, accum: int, batch: int) -> None:
    rows = [i for r in range(ranks) for k in range(accum) for i in range(6)[shard_slice(r, batch, accum, k)]]
    assert sorted(rows) == list(range(6)) and len(rows) == 6
    step_rows = torch.arange(6)[:, None]
    shards = [StepPlan(batch, accum, World(rank, ranks)).shard(step_rows) for rank in range(ranks)]
    assert torch.cat(shards).flatten().tolist() == list(range(6))

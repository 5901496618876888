"""Falsifiers of contracts/chunking-v1.yaml: each names the mutants it must kill."""

from __future__ import annotations

import pytest

from chunker import ChunkError, split

ITEMS = list("abcdefghij")


@pytest.mark.falsifies("FT-CHUNK-001", mutants=["last-chunk-dropped", "overlapping-chunks"])
def test_split_keeps_every_item_in_order() -> None:
    # one test over every size: each run (unmutated, or with one mutant) sees all of them
    for size in range(1, len(ITEMS) + 2):
        chunks = split(ITEMS, size)
        assert [item for chunk in chunks for item in chunk] == ITEMS, f"size {size}: {chunks}"
        assert all(1 <= len(chunk) <= size for chunk in chunks), f"size {size}: {chunks}"


@pytest.mark.falsifies("FT-CHUNK-002", mutants=["size-check-removed"])
@pytest.mark.parametrize("size", [0, -1])
def test_a_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ChunkError, match=f"got {size}"):
        split(ITEMS, size)

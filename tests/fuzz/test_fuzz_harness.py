"""The harness measures the bounded child, not the pytest process that started it."""

from __future__ import annotations

from pathlib import Path

from fuzz_bounded import run_batch

#: resident memory the test holds while it starts a batch (touched, so it is resident)
HELD_MB = 400


def test_a_batch_peak_is_the_childs_own_not_its_parents(tmp_path: Path) -> None:
    """A pytest worker that grew (other tests ran in it first) must not lend its size to the child's peak:
    forked before exec, the child's ``ru_maxrss`` would start at the parent's resident size."""
    held = bytearray(HELD_MB << 20)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    batch = run_batch([{"kind": "expr", "text": "1 + 1"}], tmp_path)
    assert batch.results[0]["ended"] == "value"
    assert 0 < batch.peak_mb < HELD_MB / 2, f"peak {batch.peak_mb:.0f} MB while the parent held {HELD_MB} MB"
    del held

"""Smoke test of ``bench/distill_parallel.py`` on CPU: every configuration ran and is reported against the baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import distill_parallel  # noqa: E402


@pytest.mark.slow  # four short runs, two of them on two forked ranks
def test_distill_parallel_reports_each_run_against_the_baseline(tmp_path: Path) -> None:
    assert distill_parallel.main(["--device", "cpu", "--steps", "3", "--seq", "8", "--batch", "1",
                                  "--checkpoint-every", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "distill_parallel-cpu.json").read_text())
    runs = {run["name"]: run for run in data["runs"]}
    assert list(runs) == ["1 rank x 2b", "2 ranks x b", "amp bf16", "checkpoint every 1"]
    assert runs["1 rank x 2b"]["ratio_to_baseline"] == 1.0
    assert all(run["steps"] == 3 and run["median_s"] > 0 for run in runs.values())
    checkpointed = runs["checkpoint every 1"]
    assert checkpointed["checkpoints"] == 3 and checkpointed["checkpoint_bytes"] > 0
    assert checkpointed["checkpoint_share_per_step"] == pytest.approx(
        checkpointed["checkpoint_median_s"] / runs["1 rank x 2b"]["median_s"])

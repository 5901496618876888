"""Falsifiers of distill-training-v1's evaluation schedule (FT-TRAIN-015): a run with ``--eval-every E``
evaluates its student on the held-out rows before the first step, after every E steps and after the last,
once each, and its run.json summarizes the first and the last of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pv import cli

SCHEDULE = ["distill.train:_Run.train", "distill.train:_Run._evaluate", "distill.train:_Run._eval_summary"]
SEQ, WINDOWS = 8, 40


@pytest.mark.falsifies("FT-TRAIN-015", covers=SCHEDULE, mutants=["eval-initial-skipped", "eval-final-skipped"])
def test_a_run_evaluates_at_its_start_every_e_steps_and_at_its_end(model_file, tmp_path: Path) -> None:
    data = tmp_path / "ids.npy"
    np.save(data, np.random.default_rng(3).integers(0, 1024, size=WINDOWS * SEQ, dtype=np.int64))
    out = tmp_path / "run"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student",
                         str(model_file("tiny-student")), "--data", str(data), "--out", str(out), "--seq", str(SEQ),
                         "--steps", "7", "--eval-every", "3", "--no-progress"])
    finally:
        torch.set_num_threads(previous)
    assert code == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["record"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3, 6, 7]
    steps = [r["step"] for r in records if r["record"] == "step"]
    # each evaluation comes after the steps it counts and before the next one
    order = [("eval", r["step"]) if r["record"] == "eval" else ("step", r["step"] + 1)
             for r in records if r["record"] in ("eval", "step")]
    assert order == sorted(order, key=lambda item: (item[1], item[0] == "eval")) and len(steps) == 7
    summary = json.loads((out / "run.json").read_text())["eval"]
    assert (summary["every"], summary["start"], summary["final"]) == (3, evals[0], evals[-1])

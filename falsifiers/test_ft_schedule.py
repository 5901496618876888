"""Falsifiers of distill-training-v1's learning-rate schedule (FT-TRAIN-011): the rate of every step is
Hugging Face's schedule of the same name, and a run applies it.

The reference is ``transformers``' ``get_cosine_schedule_with_warmup`` and
``get_constant_schedule_with_warmup`` (an implementation written elsewhere). As the
module says, distill's warm-up counts its step from 1 (step ``t`` of the warm-up has
``lr * (t + 1) / warmup``, so the first step learns), where Hugging Face's multiplier at
step ``t`` is ``t / warmup``: during the warm-up distill's step ``t`` is Hugging Face's
step ``t + 1``, after it the same step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill.errors import DistillError
from distill.schedule import learning_rate
from pv import cli

transformers = pytest.importorskip("transformers", reason="the reference schedules are transformers'")

SCHEDULE = ["distill.schedule", "distill.train:_Run.train"]
#: (schedule, warm-up steps, total steps): no warm-up, warm-up shorter than the run, a warm-up as long as it
CASES = [(s, w, n) for s in ("constant", "cosine") for w, n in ((0, 7), (3, 10), (1, 2), (4, 4), (5, 1))]


def _reference(schedule: str, warmup: int, total: int, lr: float) -> list[float]:
    """Hugging Face's rate at each of distill's steps 0..total-1 (warm-up shifted by one step)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    make = {"constant": lambda: transformers.get_constant_schedule_with_warmup(optimizer, warmup),
            "cosine": lambda: transformers.get_cosine_schedule_with_warmup(optimizer, warmup, total)}[schedule]
    factor = make().lr_lambdas[0]
    return [lr * factor(t + 1 if t < warmup else t) for t in range(total)]


@pytest.mark.falsifies("FT-TRAIN-011", covers=SCHEDULE, mutants=["lr-warmup-from-zero", "lr-cosine-ignores-warmup"])
def test_each_steps_rate_is_hugging_faces() -> None:
    for schedule, warmup, total in CASES:
        got = [learning_rate(t, 3e-4, schedule, warmup, total) for t in range(total)]
        want = _reference(schedule, warmup, total, 3e-4)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-18), (schedule, warmup, total)
        assert 0 < got[0] <= 3e-4, ("the first step learns, at most at the full rate", schedule, warmup, total)


@pytest.mark.falsifies("FT-TRAIN-011", covers=SCHEDULE, mutants=["lr-unknown-schedule-as-constant"])
def test_an_unknown_schedule_is_refused_by_name() -> None:
    for name in ("linear", "Cosine", ""):
        with pytest.raises(DistillError, match=f"lr schedule must be one of constant, cosine, got {name!r}"):
            learning_rate(0, 1e-3, name, 0, 5)


@pytest.mark.falsifies("FT-TRAIN-011", covers=SCHEDULE, mutants=["lr-warmup-from-zero", "lr-cosine-ignores-warmup"])
def test_a_run_steps_at_the_scheduled_rates(model_file, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["distill", "--teacher", str(model_file("tiny-teacher")), "--student", str(model_file("tiny-student")),
            "--out", str(out), "--seq", "8", "--batch", "1", "--steps", "6", "--checkpoint-every", "6",
            "--lr", "2e-3", "--lr-schedule", "cosine", "--warmup-steps", "2", "--no-progress"]
    assert cli.main(argv) == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["lr"] for r in records if r["record"] == "step"]
    assert rates == pytest.approx(_reference("cosine", 2, 6, 2e-3), rel=1e-12)

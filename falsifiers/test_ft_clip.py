"""Falsifiers of distill-training-v1's gradient clipping (FT-TRAIN-014): a step's gradients are clipped to
``--max-grad-norm`` before AdamW steps, and the norm a step logs is the norm before clipping.

What the optimizer received is read from the checkpoint: after one step, AdamW's first moment is
``(1 - beta1) * g`` with torch's ``beta1 = 0.9``, so its global norm is ``0.1 * min(|g|, max_norm)``.
(The weights alone would not tell: Adam's first step moves each weight by about ``lr * sign(g)``,
whatever the gradient's scale.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from distill.checkpoints import list_checkpoints, load_checkpoint
from pv import cli

CLIP = ["distill.train:_ClipGradients", "distill.train:_Run.train", "distill.train:DistillConfig",
        "distill.commands.distill"]
BETA1 = 0.9


def _one_step(model_file, out: Path, *options: str) -> tuple[float, float]:
    """The logged gradient norm of a 1-step run and the global norm of AdamW's first moment after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student",
                         str(model_file("tiny-student")), "--out", str(out), "--seq", "8", "--steps", "1",
                         "--checkpoint-every", "1", "--lr", "1e-3", "--no-progress", *options])
    finally:
        torch.set_num_threads(previous)
    assert code == 0
    step = next(json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()
                if json.loads(line)["record"] == "step")
    state = load_checkpoint(list_checkpoints(out)[-1]).optimizer["state"]
    moment = math.sqrt(sum(float(s["exp_avg"].double().pow(2).sum()) for s in state.values()))
    return step["grad_norm"], moment


@pytest.mark.falsifies("FT-TRAIN-014", covers=CLIP, mutants=["clip-ignored", "clip-norm-logged-after-clipping"])
def test_the_gradients_adamw_receives_are_clipped_to_max_grad_norm(model_file, tmp_path: Path) -> None:
    norm, moment = _one_step(model_file, tmp_path / "clipped", "--max-grad-norm", "1e-3")
    assert norm > 1e-2, f"the test needs a gradient well above the limit, got {norm}"
    assert moment == pytest.approx((1 - BETA1) * 1e-3, rel=1e-4), (norm, moment)
    unclipped_norm, unclipped = _one_step(model_file, tmp_path / "measured", "--max-grad-norm", "0")
    assert unclipped_norm == pytest.approx(norm, rel=1e-6), "the same first step, measured either way"
    assert unclipped == pytest.approx((1 - BETA1) * unclipped_norm, rel=1e-4), (unclipped_norm, unclipped)

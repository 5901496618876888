"""The learning rate of each optimizer step: linear warm-up, then constant or cosine decay.

As in Hugging Face's ``get_cosine_schedule_with_warmup`` and torchtune's recipe of
the same name: step ``t`` (from 0) of ``total`` has the rate
``lr * (t + 1) / warmup`` during the ``warmup`` first steps, then, for the cosine
schedule, ``lr * 0.5 * (1 + cos(pi * p))`` with ``p = (t - warmup) / (total - warmup)``,
falling from ``lr`` towards 0 at the last step. The rate depends on the step
alone, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math

from distill.errors import DistillError

SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, lr: float, schedule: str, warmup: int, total: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of a run of ``total`` steps."""
    if schedule not in SCHEDULES:
        raise DistillError(f"lr schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

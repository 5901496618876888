"""A seeded random sample of the mutants that a test reaches, and the score it estimates.

Running every mutant of a large package can take longer than a machine can give (the training
falsifiers of a distillation package cost seconds each, and a survivor runs all of them). A uniform
sample of the reached mutants, drawn with a seed, estimates the score with a known error; the mutants
no test reaches are counted exactly, as the first, traced run finds them all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pv.mutation.equivalents import Equivalent
from pv.mutation.results import KILLED, NO_COVERAGE, SURVIVED, Mutant

#: the normal quantile of a two-sided 95% interval
Z95 = 1.959964


def draw(mutants: Sequence[Mutant], equivalents: Mapping[str, Equivalent], size: int,
         seed: int) -> tuple[dict[str, int], list[Mutant]]:
    """Mark ``size`` of the mutants that a test reaches (listed equivalents left out) as sampled, the
    rest of them as not sampled. Returns the sample's description (seed, size, frame) for the report, and
    the mutants in the order to run them: the sampled ones in the order drawn, so that the mutants
    finished at any moment of the run are themselves a random sample (an interrupted run still estimates)."""
    frame = sorted(m.key for m in mutants if m.tests and not _listed(m, equivalents))
    chosen = random.Random(seed).sample(frame, min(size, len(frame)))  # in the order drawn
    rank = {key: i for i, key in enumerate(chosen)}
    in_frame = set(frame)
    for mutant in mutants:
        if mutant.key in in_frame:
            mutant.sampled = mutant.key in rank
    return ({"seed": seed, "size": len(chosen), "frame": len(frame)},
            sorted(mutants, key=lambda m: rank.get(m.key, -1)))


def _listed(mutant: Mutant, equivalents: Mapping[str, Equivalent]) -> bool:
    entry = equivalents.get(mutant.key)
    return entry is not None and entry.change == mutant.site.change


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(mutants: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """pv's score of the mutants of a JSON report (all, or one module's), estimated from the sampled ones: the
    killed share ``p`` of the sampled mutants decided (killed or survived) stands for that of the frame (the
    mutants marked sampled or not), and the mutants no test reaches count as they are. ``low``/``high``:
    ``p``'s 95% Wilson interval carried through. None when no sampled mutant was decided."""
    frame = sum(m.get("sampled") is not None for m in mutants)
    sampled = [m for m in mutants if m.get("sampled")]
    killed = sum(m["status"] == KILLED for m in sampled)
    decided = killed + sum(m["status"] == SURVIVED for m in sampled)
    finished = sum(m["status"] != "not-run" for m in sampled)
    no_coverage = sum(m["status"] == NO_COVERAGE for m in mutants)
    if decided == 0:
        return None
    covered = frame * decided / finished  # the frame's mutants that would be killed or survive

    def score(p: float) -> float:
        return p * covered / (covered + no_coverage)

    low, high = wilson(killed, decided)
    return {"score": score(killed / decided), "low": score(low), "high": score(high), "killed": killed,
            "decided": decided, "finished": finished, "no_coverage": no_coverage}

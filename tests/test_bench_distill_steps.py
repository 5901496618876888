"""Smoke test of ``bench/distill_steps.py`` with tiny models on CPU: the JSON and the figures derived in it."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import distill_steps  # noqa: E402

TINY = ["--device", "cpu", "--teacher-preset", "tiny", "--student-preset", "tiny", "--teacher-layers", "1",
        "--student-layers", "1", "--teacher-vocab", "320", "--student-vocab", "256", "--batch", "1", "--seq", "8"]


@pytest.fixture
def fast_synth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random valid Q4_K blocks for every matrix (as for a 7B) instead of running the quantizer: seconds saved."""
    monkeypatch.setattr("distill.synth.QUANTIZE_MAX_ELEMENTS", 0)


def test_distill_steps_json_has_step_times_memory_losses_and_the_projection(tmp_path: Path, fast_synth: None) -> None:
    assert distill_steps.main([*TINY, "--steps", "3", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "distill_steps-cpu.json").read_text())
    assert data["benchmark"] == "distill_steps" and data["device"]["type"] == "cpu" and data["device"]["date"]
    steps = data["steps"]
    assert steps["completed"] == 3 and len(steps["times_s"]) == 3
    rest = steps["times_s"][1:]
    assert steps["mean_s"] == pytest.approx(sum(rest) / len(rest))
    assert steps["projected_500_steps_s"] == pytest.approx(steps["times_s"][0] + 499 * steps["mean_s"])
    losses = data["losses"]
    assert len(losses["values"]) == 3 and losses["all_finite"] and all(math.isfinite(x) for x in losses["values"])
    memory = data["memory"]
    assert memory["peak_bytes"] == memory["live_at_step_start_bytes"] + memory["step_peak_extra_bytes"]
    assert memory["live_at_step_start_bytes"] > data["teacher_resident_bytes"] > 0
    assert data["backend_decision"]["backend"] in ("dequant", "q4k-native")
    assert data["teacher_shape"]["vocab_size"] == 320 and data["teacher_vocab_effective"] == 256  # cut to the student
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["median seconds per step"]["measured"] == steps["median_s"]
    assert targets["all losses finite"]["met"] is True


def test_distill_steps_refuses_a_student_larger_than_its_teacher(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert distill_steps.main([*TINY, "--student-vocab", "100000", "--out", str(tmp_path)]) == 2
    assert "exceeds the teacher's" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

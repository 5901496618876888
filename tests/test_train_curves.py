"""The run's curves: matplotlib panels drawn from the log's records, a PNG of them, and a summary embedding it."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from matplotlib import image

from distill.curves import PLOT_FILE, curves_figure, log_records, panels, plot_png, summary_markdown

STEPS = 30


def _records(eval_steps=(0, 10, 20, 30), lr: bool = True) -> list[dict]:
    """A log of STEPS step records (lr and grad_norm when ``lr``) and eval records at ``eval_steps``."""
    records = [{"record": "header", "config": {}}]
    for step in range(STEPS):
        record = {"record": "step", "step": step, "loss": 3.0 - step / 20, "step_time_s": 0.1 + step % 3 / 100}
        if lr:
            record.update(lr=1e-3 * min(1.0, (step + 1) / 5), grad_norm=2.0 / (step + 1))
        records.append(record)
    records += [{"record": "eval", "step": s, "kd_loss": 2.5 - s / 40, "ce": 5.0, "top1_agreement": 0.1 + s / 100,
                 "positions": 512} for s in eval_steps]
    return records


def _lines(found: list[dict], title_start: str) -> dict[str, tuple[list[int], list[float]]]:
    [panel] = [p for p in found if p["title"].startswith(title_start)]
    return {label: (steps, values) for label, _, steps, values in panel["lines"]}


def test_each_series_of_the_log_is_drawn_against_its_own_steps() -> None:
    found = panels(_records())
    assert [p["title"] for p in found] == ["KD loss", "held-out top-1 agreement with the teacher", "learning rate",
                                           "gradient norm", "step time"]
    loss = _lines(found, "KD loss")
    assert loss["train"] == (list(range(STEPS)), [3.0 - s / 20 for s in range(STEPS)])
    assert loss["held-out"] == ([0, 10, 20, 30], [2.5, 2.25, 2.0, 1.75])  # eval steps, not their positions
    assert _lines(found, "held-out top-1")["held-out"][1] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert _lines(found, "learning rate")["lr"][1][:6] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3, 1e-3])
    assert _lines(found, "step time")["step time"][1][:3] == pytest.approx([0.1, 0.11, 0.12])


def test_panels_without_data_are_left_out() -> None:
    found = panels(_records(eval_steps=(), lr=False))
    assert [p["title"] for p in found] == ["KD loss", "step time"]
    assert list(_lines(found, "KD loss")) == ["train"]


def test_a_resumed_log_draws_each_step_once_with_its_last_record() -> None:
    records = _records(eval_steps=())
    records.append({"record": "step", "step": 3, "loss": 9.0, "step_time_s": 0.5})
    steps, values = _lines(panels(records), "KD loss")["train"]
    assert steps == list(range(STEPS)) and values[3] == 9.0


def test_every_panel_has_labelled_axes_and_real_ticks() -> None:
    axes = curves_figure(_records()).get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss", "agreement", "learning rate", "norm", "seconds"]
    assert axes[-1].get_xlabel() == "optimizer step"
    for ax in axes:
        low, high = ax.get_ylim()
        inside = [t for t in ax.get_yticks() if low <= t <= high]
        assert len(inside) >= 2 and all(label.get_text() for label in ax.get_yticklabels()[:1])
    assert [t for t in axes[-1].get_xticks() if 0 <= t <= STEPS] == [0, 5, 10, 15, 20, 25, 30]


def _decode(png: bytes):
    return image.imread(io.BytesIO(png), format="png")


def test_the_png_has_one_panel_per_series_with_labelled_axes() -> None:
    pixels = _decode(plot_png(_records()))
    assert pixels.shape[0] == 5 * 220 and pixels.shape[1] == 800  # five panels of 2.2 inches at 100 dpi
    train_blue = (abs(pixels[..., 0] - 0x1F / 255) < 0.02) & (abs(pixels[..., 2] - 0xB4 / 255) < 0.02)
    eval_red = (abs(pixels[..., 0] - 0xD6 / 255) < 0.02) & (abs(pixels[..., 1] - 0x27 / 255) < 0.02)
    assert train_blue.sum() > 200 and eval_red.sum() > 200


@pytest.mark.parametrize("records", [[], [{"record": "header"}], _records()[:2],
                                     [{"record": "step", "step": 0, "loss": math.nan, "step_time_s": math.inf},
                                      {"record": "step", "step": 1, "loss": 1.0, "step_time_s": 0.1}]])
def test_empty_single_and_non_finite_logs_still_give_a_png(records) -> None:
    assert _decode(plot_png(records)).shape[1] == 800


def test_the_log_is_read_without_the_line_a_kill_cut_short(tmp_path: Path) -> None:
    lines = [json.dumps({"record": "step", "step": 0, "loss": 1.0}) + "\n", '{"record": "st']
    assert log_records(lines) == [{"record": "step", "step": 0, "loss": 1.0}]
    assert log_records([]) == []


def test_the_summary_embeds_the_plot_and_escapes_table_cells() -> None:
    text = summary_markdown({"status": "failed", "steps_completed": 3, "steps_requested": 5, "final_loss": 0.5,
                             "error": "OSError: a|b"})
    assert f"]({PLOT_FILE})" in text
    assert "| status | failed |" in text and "| steps | 3 of 5 |" in text and "a\\|b" in text

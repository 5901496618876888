"""The run's curves: a PNG of its log drawn with matplotlib, and a Markdown summary embedding it.

Panels, top to bottom, all against the optimizer step: the KD loss (each
training step, and the held-out loss of the ``eval`` records when the log has
them), the held-out top-1 agreement with the teacher, the learning rate and the
gradient norm (when the step records carry ``lr`` and ``grad_norm``), and the
step time. A panel without data is left out. The figure is drawn on
matplotlib's Agg canvas (no display, no global pyplot state); matplotlib's
cache goes to a folder of this user's in the system's temporary folder unless
``MPLCONFIGDIR`` says otherwise.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILE = "curves.png"
SUMMARY_MD = "summary.md"
#: Figure width and height per panel, in inches, and its resolution.
WIDTH_IN, PANEL_HEIGHT_IN, DPI = 8.0, 2.2, 100
STEP_LABEL = "optimizer step"
TRAIN_COLOUR, EVAL_COLOUR, OTHER_COLOUR = "#1f77b4", "#d62728", "#ff7f0e"


def log_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of a run's log (JSON lines); a line cut short by a kill is left out."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _series(records: list[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in the records of ``kind``, by step (the last record of a step wins)."""
    by_step: dict[int, float] = {}
    for record in records:
        value = record.get(key)
        if record.get("record") == kind and isinstance(record.get("step"), int) and isinstance(value, (int, float)):
            by_step[record["step"]] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def panels(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The panels drawn for ``records``: title, y label, log scale, and lines (label, colour, steps, values)."""
    found = []

    def panel(title: str, ylabel: str, lines: list[tuple[str, str, str, str]], log: bool = False) -> None:
        drawn = [(label, colour, *_series(records, kind, key)) for label, colour, kind, key in lines]
        drawn = [line for line in drawn if line[2]]
        if drawn:
            found.append({"title": title, "ylabel": ylabel, "log": log, "lines": drawn})

    panel("KD loss", "loss", [("train", TRAIN_COLOUR, "step", "loss"), ("held-out", EVAL_COLOUR, "eval", "kd_loss")])
    panel("held-out top-1 agreement with the teacher", "agreement",
          [("held-out", EVAL_COLOUR, "eval", "top1_agreement")])
    panel("learning rate", "learning rate", [("lr", OTHER_COLOUR, "step", "lr")])
    panel("gradient norm", "norm", [("grad norm", OTHER_COLOUR, "step", "grad_norm")], log=True)
    panel("step time", "seconds", [("step time", OTHER_COLOUR, "step", "step_time_s")])
    return found


def _matplotlib_cache() -> None:
    """Point matplotlib's config and font cache at a private folder in the temporary folder, unless set."""
    if "MPLCONFIGDIR" in os.environ:
        return
    folder = Path(tempfile.gettempdir()) / f"distill-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        private = stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid())
    except OSError:
        private = False
    os.environ["MPLCONFIGDIR"] = str(folder) if private else tempfile.mkdtemp(prefix="distill-matplotlib-")


def curves_figure(records: list[dict[str, Any]]) -> Figure:
    """The matplotlib figure of the run's log records (see the module docstring); without data, one empty panel."""
    _matplotlib_cache()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    found = panels(records) or [{"title": "no steps yet", "ylabel": "loss", "log": False, "lines": []}]
    figure = Figure(figsize=(WIDTH_IN, PANEL_HEIGHT_IN * len(found)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(found), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, found):
        for label, colour, steps, values in panel["lines"]:
            ax.plot(steps, values, color=colour, label=label, marker="o" if len(steps) < 30 else None, markersize=3)
        if panel["log"] and any(v > 0 for *_, values in panel["lines"] for v in values if math.isfinite(v)):
            ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_ylabel(panel["ylabel"])
        ax.grid(True, alpha=0.3)
        if len(panel["lines"]) > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel(STEP_LABEL)
    return figure


def plot_png(records: list[dict[str, Any]]) -> bytes:
    """The PNG of ``curves_figure(records)``."""
    buffer = io.BytesIO()
    curves_figure(records).savefig(buffer, format="png")
    return buffer.getvalue()


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run's Markdown summary: its figures in a table, and the curves."""

    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return "-" if value is None else str(value).replace("|", "\\|")

    rows = [("status", summary.get("status")), ("steps", f"{summary.get('steps_completed')} of {summary.get('steps_requested')}"),
            ("first loss", summary.get("first_loss")), ("last loss", summary.get("final_loss")),
            ("mean step time (s)", summary.get("mean_step_time_s")), ("ranks", summary.get("world_size")),
            ("teacher backend", (summary.get("backend") or {}).get("backend")),
            ("last checkpoint", summary.get("last_checkpoint")), ("error", summary.get("error"))]
    lines = ["# Distillation run", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {show(value)} |" for name, value in rows]
    lines += ["", f"![the run's curves against the optimizer step]({PLOT_FILE})", ""]
    return "\n".join(lines)

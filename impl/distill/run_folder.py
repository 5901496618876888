"""The run folder of a distillation: its file names, atomic writes, the log, run.json and what a resume reads.

Rank 0 alone writes here (``distill.train``). Every file is written through a
temporary file beside it and a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distill.checkpoints import CHECKPOINT_DIR, list_checkpoints, read_record, remove_leftovers
from distill.curves import PLOT_FILE, SUMMARY_MD, plot_png, summary_markdown
from distill.errors import DistillError

LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "student.safetensors"
SUMMARY_FILE = "run.json"
OUTPUT_FILES = (LOG_FILE, CHECKPOINT_FILE, SUMMARY_FILE)


def check_output_folder(out_dir: Path, resume: bool) -> None:
    """Refuse an output path that is not a folder, a resume without a run, a new run into a run's folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DistillError(f"output folder {out_dir} exists and is not a folder")
    existing = [name for name in (*OUTPUT_FILES, CHECKPOINT_DIR) if (out_dir / name).exists()]
    if resume and not (out_dir / LOG_FILE).is_file():
        raise DistillError(f"{out_dir} holds no run to resume (no {LOG_FILE})")
    if existing and not resume:
        raise DistillError(f"{out_dir} already holds a run ({', '.join(existing)}); continue it with "
                           f"--resume {out_dir}, or choose another output folder")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary name is unique (process id and a random part); the final file
    gets the usual permissions (0666 less the umask), whatever ``write`` used.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def save_student(student: torch.nn.Module, path: Path) -> None:
    """The trained student's parameters as safetensors, written atomically."""
    from safetensors.torch import save_model

    write_atomic(path, lambda tmp: save_model(student, str(tmp)))


def saved_config(out_dir: Path) -> dict[str, Any]:
    """The configuration a run folder was last run with: its newest checkpoint's, else its log header's."""
    checkpoints = list_checkpoints(out_dir)
    if checkpoints:
        return read_record(checkpoints[-1])["config"]
    try:
        with open(out_dir / LOG_FILE, encoding="utf-8") as log:
            header = json.loads(log.readline())
        return header["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DistillError(f"{out_dir / LOG_FILE}: no readable header to resume from: {err}") from None


def saved_status(out_dir: Path) -> str | None:
    """The status in a run folder's run.json (None when it has none that reads)."""
    try:
        return json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def earlier_step_records(out_dir: Path, start: int) -> list[dict[str, Any]]:
    """The step records of the log before step ``start``, one per step, in step order."""
    records = []
    with open(out_dir / LOG_FILE, encoding="utf-8") as log:
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if record.get("record") == "step" and record["step"] < start:
                records.append(record)
    by_step = {r["step"]: r for r in records}
    return [by_step[s] for s in sorted(by_step)]


def open_log(out_dir: Path, header: dict[str, Any], resumed: dict[str, Any] | None,
             before: list[dict[str, Any]]):
    """The log, rewritten and opened for appending: ``header`` for a new run; for a resume
    (``resumed`` its resume record), the old header, the ``before`` records and ``resumed``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    records = [header]
    if resumed is not None:
        with open(out_dir / LOG_FILE, encoding="utf-8") as log:
            records = [json.loads(log.readline())]
        records += before
        records.append(resumed)
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_atomic(out_dir / LOG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return open(out_dir / LOG_FILE, "a", encoding="utf-8")


def write_summary_files(out_dir: Path, summary: dict[str, Any], losses: list[float], times: list[float]) -> None:
    """run.json, curves.png and summary.md of a run folder."""
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    png = plot_png(list(range(len(losses))), losses, times)
    write_atomic(out_dir / PLOT_FILE, lambda tmp: tmp.write_bytes(png))
    text = summary_markdown(summary)
    write_atomic(out_dir / SUMMARY_MD, lambda tmp: tmp.write_text(text, encoding="utf-8"))

"""The run folder of a distillation: its file names, atomic writes, the log, run.json and what a resume reads.

Rank 0 alone writes here (``distill.train``). Every file is written through a
temporary file beside it and a rename, so a reader never sees half a file.

The folder defends itself: a run claims it exclusively (``RunFolder``: created
if missing, then locked with ``flock``) before checking it, so a second run into
it is refused while the first holds it; a new run refuses a folder holding any
file it would write; a resume refuses such a file that is a link or not a
regular file. Every field a resume reads from the log or run.json is checked; a
problem is one DistillError naming the file, the line and the field.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from distill.checkpoints import CHECKPOINT_DIR, checkpoint_folder, list_checkpoints, read_record, remove_leftovers
from distill.curves import PLOT_FILE, SUMMARY_MD, log_records, plot_png, summary_markdown
from distill.errors import DistillError
from distill.export import EXPORT_FILES
from distill.inputs import open_input

LOG_FILE = "train_log.jsonl"
CHECKPOINT_FILE = "student.safetensors"
SUMMARY_FILE = "run.json"
#: the student the run started from, kept in the run folder: the baseline of an evaluation
INITIAL_STUDENT = "initial_student.gguf"
OUTPUT_FILES = (LOG_FILE, CHECKPOINT_FILE, SUMMARY_FILE, INITIAL_STUDENT, *EXPORT_FILES)
#: every name a run (or its preset pair) writes in its folder
#: the largest log a resume reads
MAX_LOG_BYTES = 4 * 1024**3
RUN_FILES = (*OUTPUT_FILES, CHECKPOINT_DIR, PLOT_FILE, SUMMARY_MD, "teacher.gguf", "student.gguf")


def check_output_folder(out_dir: Path, resume: bool) -> None:
    """Refuse an output path that is not a folder, a resume without a run, a new run into a folder holding
    any file it would write, and a run file that is a link or not a regular file."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DistillError(f"output folder {out_dir} exists and is not a folder")
    existing = [name for name in RUN_FILES if os.path.lexists(out_dir / name)]
    if resume and not (out_dir / LOG_FILE).is_file():
        raise DistillError(f"{out_dir} holds no run to resume (no {LOG_FILE})")
    if existing and not resume:
        held = "already holds a run" if set(existing) & {*OUTPUT_FILES, CHECKPOINT_DIR} else "holds files a run writes"
        raise DistillError(f"{out_dir} {held} ({', '.join(existing)}); continue a run with "
                           f"--resume {out_dir}, or choose another output folder")
    checkpoint_folder(out_dir)
    for name in existing:
        path = out_dir / name
        if name != CHECKPOINT_DIR and (path.is_symlink() or not path.is_file()):
            raise DistillError(f"{path}: is a link or not a regular file; the run replaces it: move it away")


class RunFolder:
    """The exclusive claim of a run folder: created when missing, locked with ``flock`` while the run lives.

    A second claim of the same folder is refused while the first holds it. A folder
    this claim created is removed again when the run leaves nothing in it (bad input).
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.created = False
        self._fd: int | None = None

    def __enter__(self) -> "RunFolder":
        try:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.out_dir)
                self.created = True
            except FileExistsError:
                pass
            self._fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise DistillError(f"output folder {self.out_dir}: cannot create or open it: {err.strerror or err}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise DistillError(f"output folder {self.out_dir} is in use by another run; wait for it to end, "
                               "or choose another output folder") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.created:
            try:
                self.out_dir.rmdir()  # only when empty: a refused run leaves nothing
            except OSError:
                pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


#: the type each saved configuration field must have (a missing optional one is None)
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "teacher": (str, type(None)), "student": (str, type(None)), "preset_pair": (str, type(None)),
    "data": (str, type(None)), "backend": (str, type(None)), "amp": (str, type(None)),
    "checkpoint_every": (int, type(None)), "steps": (int,), "batch": (int,), "seq": (int,), "grad_accum": (int,),
    "keep": (int,), "seed": (int,), "temperature": (float, int), "lr": (float, int), "device": (str,),
    "student_dtype": (str,), "lr_schedule": (str,), "warmup_steps": (int,), "max_grad_norm": (float, int, type(None)),
    "log_every": (int,), "nproc": (int, type(None)),
}


def check_saved_config(where: str, config: Any) -> dict[str, Any]:
    """A saved configuration with the right type in every field it has; DistillError naming ``where`` and the field."""
    if not isinstance(config, dict):
        raise DistillError(f"{where}: field 'config' is not an object")
    for key, types in CONFIG_FIELDS.items():
        value = config.get(key)
        if key in config and (isinstance(value, bool) or not isinstance(value, types)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise DistillError(f"{where}: field 'config.{key}' is {value!r:.80}, expected {names}")
    return config


def _log_header(out_dir: Path) -> dict[str, Any]:
    """The first record of the log, checked to be a header."""
    log_path = out_dir / LOG_FILE
    try:
        with read_log(out_dir) as log:
            header = json.loads(log.readline())
    except (OSError, ValueError) as err:
        raise DistillError(f"{log_path}: line 1: no readable header to resume from: {err}") from None
    if not isinstance(header, dict) or header.get("record") != "header":
        raise DistillError(f"{log_path}: line 1: field 'record' is not 'header': no header to resume from")
    return header


def read_log(out_dir: Path) -> io.TextIOWrapper:
    """The run's log opened for reading: a regular file, not a link or a FIFO, of at most MAX_LOG_BYTES."""
    path = out_dir / LOG_FILE
    if path.is_symlink():
        raise DistillError(f"{path}: is a link, not the run's own log")
    return io.TextIOWrapper(open_input(path, "the run's log", MAX_LOG_BYTES), encoding="utf-8")


def saved_config(out_dir: Path) -> dict[str, Any]:
    """The configuration a run folder was last run with: its newest checkpoint's, else its log header's."""
    header = _log_header(out_dir)  # checked even when a checkpoint holds the configuration: a resume rewrites it
    checkpoints = list_checkpoints(out_dir)
    if checkpoints:
        return check_saved_config(str(checkpoints[-1] / "checkpoint.json"), read_record(checkpoints[-1])["config"])
    return check_saved_config(f"{out_dir / LOG_FILE}: line 1", header.get("config"))


def saved_status(out_dir: Path) -> str | None:
    """The status in a run folder's run.json (None when it has none that reads)."""
    try:
        with open_input(out_dir / SUMMARY_FILE, "the run's summary", 1 << 20) as fh:
            status = json.loads(fh.read()).get("status")
    except (DistillError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def earlier_records(out_dir: Path, start: int) -> list[dict[str, Any]]:
    """The step records of the log before step ``start`` and its eval records up to it, one per step and
    kind, in log order (the evaluation after N steps comes before step record N)."""
    records = []
    path = out_dir / LOG_FILE
    try:
        with read_log(out_dir) as log:
            for number, line in enumerate(log, 1):
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a kill
                    continue
                if not isinstance(record, dict):
                    continue
                if record.get("record") == "step":
                    _check_step_record(f"{path}: line {number}", record)
                    if record["step"] < start:
                        records.append(record)
                elif record.get("record") == "eval" and isinstance(record.get("step"), int) \
                        and not isinstance(record["step"], bool) and record["step"] <= start:
                    records.append(record)
    except (OSError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: cannot read the log: {err}") from None
    by_step = {(r["step"], r["record"] == "step"): r for r in records}
    return [by_step[key] for key in sorted(by_step)]


def keep_initial_student(student: Path, out_dir: Path) -> None:
    """Keep the student the run starts from in the run folder as :data:`INITIAL_STUDENT` (a hard link,
    else a copy), once: the baseline of an evaluation."""
    import shutil

    target = out_dir / INITIAL_STUDENT
    if target.exists() or Path(student).resolve() == target.resolve():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(student, tmp)
        except OSError:
            shutil.copyfile(student, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check_step_record(where: str, record: dict[str, Any]) -> None:
    import math

    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DistillError(f"{where}: field 'step' is {step!r:.80}, expected an integer >= 0")
    for key in ("loss", "step_time_s"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DistillError(f"{where}: field {key!r} is {value!r:.80}, expected a finite number")


def open_log(out_dir: Path, header: dict[str, Any], resumed: dict[str, Any] | None,
             before: list[dict[str, Any]]):
    """The log, rewritten and opened for appending: ``header`` for a new run; for a resume
    (``resumed`` its resume record), the old header, the ``before`` records and ``resumed``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    records = [header]
    if resumed is not None:
        records = [_log_header(out_dir)]
        records += before
        records.append(resumed)
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_atomic(out_dir / LOG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return open(out_dir / LOG_FILE, "a", encoding="utf-8")


def write_summary_files(out_dir: Path, summary: dict[str, Any]) -> None:
    """run.json, curves.png (from the run's log) and summary.md of a run folder."""
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    with read_log(out_dir) as log:
        png = plot_png(log_records(log))
    write_atomic(out_dir / PLOT_FILE, lambda tmp: tmp.write_bytes(png))
    text = summary_markdown(summary)
    write_atomic(out_dir / SUMMARY_MD, lambda tmp: tmp.write_text(text, encoding="utf-8"))

"""Checkpoints of a distillation run: written atomically, the last few kept, read back to resume.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN`` of the run folder holding
- ``student.safetensors``: the student's parameters;
- ``training_state.pt``: the optimizer's state, the RNG states (torch, CUDA)
  and the data stream's state (read back with ``weights_only=True``);
- ``checkpoint.json``: the step, the data position, the run's configuration and
  its identity (file fingerprints of teacher, student and data, the vocabulary
  decision, the contract versions), the format version.

It is written into a hidden temporary folder beside it, every file flushed to
disk, and then renamed into place: a folder named ``step-*`` is always
complete, whenever the process is killed. Older checkpoints beyond ``keep``
are renamed away before they are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.errors import DistillError

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8})$")
#: the contracts whose promises a run relies on (name -> version), recorded in every checkpoint
CONTRACT_VERSIONS: dict[str, str] = {
    "distill-training": "1.1.0",
    "distill-kd-loss": "1.0.0",
    "distill-teacher-vocab-alignment": "1.0.0",
    "distill-frozen-q4k-teacher": "1.1.0",
    "distill-teacher-backend-selection": "1.0.0",
}
#: bytes read for a file's fingerprint: the first block (the GGUF header) and evenly spaced samples
_HEAD_BYTES, _SAMPLE_BYTES, _SAMPLES = 1 << 20, 1 << 16, 32


def file_fingerprint(path: Path) -> str:
    """``size:sha256`` of a file's size, its first MiB and 32 evenly spaced 64 KiB samples.

    Cheap for a multi-GB teacher, and any re-quantization or different model
    changes it; it is not a hash of every byte.
    """
    digest = hashlib.sha256()
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            digest.update(fh.read(_HEAD_BYTES))
            for i in range(_SAMPLES):
                fh.seek(size * i // _SAMPLES)
                digest.update(fh.read(_SAMPLE_BYTES))
    except OSError as err:
        raise DistillError(f"{path}: cannot read: {err}") from None
    return f"{size}:{digest.hexdigest()}"


@dataclass
class Checkpoint:
    """One checkpoint as read back: its folder, its record and its state dicts."""

    path: Path
    record: dict[str, Any]
    student: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    data: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.record["step"])


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(out_dir: Path) -> list[Path]:
    """The complete checkpoints of a run folder, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name) and p.is_dir())


def rng_states(device: torch.device) -> dict[str, Any]:
    """The global RNG states a run would need to repeat a random draw."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(out_dir: Path, record: dict[str, Any], student: torch.nn.Module, optimizer: dict[str, Any],
                    rng: dict[str, Any], data: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``record["step"]`` atomically; keep the newest ``keep``; return its folder."""
    from safetensors.torch import save_model

    folder = Path(out_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(int(record["step"]))
    tmp = folder / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        save_model(student, str(tmp / "student.safetensors"))
        torch.save({"optimizer": optimizer, "rng": rng, "data": data}, tmp / "training_state.pt")
        (tmp / "checkpoint.json").write_text(json.dumps({**record, "format": FORMAT_VERSION}, indent=2) + "\n",
                                             encoding="utf-8")
        for name in ("student.safetensors", "training_state.pt", "checkpoint.json"):
            _fsync(tmp / name)
        if final.exists():  # the same step written again (a resumed run): replace it
            _discard(final)
        os.rename(tmp, final)
        _fsync(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(out_dir)[:-keep]:
        _discard(old)
    return final


def _discard(path: Path) -> None:
    """Delete a checkpoint folder: renamed away first, so that no half-deleted ``step-*`` remains."""
    doomed = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_leftovers(out_dir: Path) -> None:
    """Delete temporary folders left by a process killed while writing or deleting a checkpoint."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                shutil.rmtree(path, ignore_errors=True)


def read_record(path: Path) -> dict[str, Any]:
    """The ``checkpoint.json`` of a checkpoint folder, checked for its format."""
    try:
        record = json.loads((path / "checkpoint.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DistillError(f"{path}: not a readable checkpoint: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
        raise DistillError(f"{path}: checkpoint format {record.get('format')!r}, expected {FORMAT_VERSION}")
    return record


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder (tensors on the CPU)."""
    from safetensors.torch import load_file

    record = read_record(path)
    try:
        student = load_file(path / "student.safetensors")
        state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: safetensors and torch raise their own types
        raise DistillError(f"{path}: cannot read the checkpoint: {type(err).__name__}: {err}") from None
    return Checkpoint(path, record, student, state["optimizer"], state["rng"], state["data"])


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for every key whose value differs."""
    keys = sorted(set(saved) | set(now))
    return [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in keys if saved.get(key) != now.get(key)]

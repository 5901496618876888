"""Checkpoints of a distillation run: written atomically, the last few kept, read back to resume.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN`` of the run folder holding
- ``student.safetensors``: the student's parameters;
- ``training_state.pt``: the optimizer's state, the RNG states (torch, CUDA)
  and the data stream's state (read back with ``weights_only=True``);
- ``checkpoint.json``: the step, the data position, the run's configuration and
  its identity (file fingerprints of teacher, student and data, the vocabulary
  decision, the contract versions), the format version, and the sha256 of the
  two other files, checked when the checkpoint is read back: a file copied in
  from another checkpoint is refused.

Reading one back checks every field it reads; a problem is one DistillError
naming the checkpoint and the field. ``checkpoints/`` and the folders in it are
never symbolic links: a link is refused before anything is read or deleted.

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
from distill.inputs import MAX_READ_BYTES, read_input, sha256_of

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 2
#: the files of a checkpoint whose sha256 its checkpoint.json records
STATE_FILES = ("student.safetensors", "training_state.pt")
#: the largest checkpoint.json read
MAX_RECORD_BYTES = 1 << 20
_NAME = re.compile(r"^step-(\d{8})$")
#: the contracts whose promises a run relies on (name -> version), recorded in every checkpoint
CONTRACT_VERSIONS: dict[str, str] = {
    "distill-training": "1.2.0",
    "distill-kd-loss": "1.0.0",
    "distill-teacher-vocab-alignment": "1.0.0",
    "distill-frozen-q4k-teacher": "1.1.0",
    "distill-teacher-backend-selection": "1.0.0",
}
def file_fingerprint(path: Path, what: str = "a run's input") -> str:
    """``size:sha256`` of every byte of a file (a few seconds per GB): any changed byte changes it."""
    digest = sha256_of(path, what, 1 << 62)
    return f"{Path(path).stat().st_size}:{digest}"


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
    folder = checkpoint_folder(out_dir)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if _NAME.match(p.name))
    for path in found:
        if path.is_symlink() or not path.is_dir():
            raise DistillError(f"{path}: not a checkpoint folder (a link or a file); move it away")
    return found


def checkpoint_folder(out_dir: Path) -> Path:
    """``out_dir/checkpoints``, refused when it is a symbolic link (the run deletes folders in it)."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DistillError(f"{folder}: is a link or a file, not the run's own folder of checkpoints; move it away")
    return folder


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

    folder = checkpoint_folder(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(int(record["step"]))
    tmp = folder / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        save_model(student, str(tmp / "student.safetensors"))
        torch.save({"optimizer": optimizer, "rng": rng, "data": data}, tmp / "training_state.pt")
        hashes = {name: sha256_of(tmp / name, "a checkpoint file", 1 << 62) for name in STATE_FILES}
        (tmp / "checkpoint.json").write_text(
            json.dumps({**record, "format": FORMAT_VERSION, "sha256": hashes}, indent=2) + "\n", encoding="utf-8")
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
    folder = checkpoint_folder(out_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                if path.is_symlink():
                    path.unlink()
                else:
                    shutil.rmtree(path, ignore_errors=True)


def _field(path: Path, name: str, value: Any, ok: bool, expected: str) -> Any:
    if not ok:
        raise DistillError(f"{path}: field {name!r} is {_shown(value)}, expected {expected}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def read_record(path: Path) -> dict[str, Any]:
    """The ``checkpoint.json`` of a checkpoint folder, its format and fields checked."""
    text = read_input(path / "checkpoint.json", "a checkpoint record", MAX_RECORD_BYTES)
    try:
        record = json.loads(text)
    except ValueError as err:
        raise DistillError(f"{path}: not a readable checkpoint: {err}") from None
    where = path / "checkpoint.json"
    if not isinstance(record, dict):
        raise DistillError(f"{where}: not a readable checkpoint: expected a JSON object")
    if record.get("format") != FORMAT_VERSION:
        raise DistillError(f"{path}: checkpoint format {record.get('format')!r}, expected {FORMAT_VERSION}")
    step = _field(where, "step", record.get("step"), _is_int(record.get("step"), 1), "an integer >= 1")
    _field(where, "step", step, path.name == checkpoint_name(step), f"the folder's step ({path.name})")
    _field(where, "data_position", record.get("data_position"), _is_int(record.get("data_position")),
           "an integer >= 0")
    for name in ("config", "identity"):
        _field(where, name, record.get(name), isinstance(record.get(name), dict), "an object")
    hashes = record.get("sha256")
    _field(where, "sha256", hashes, isinstance(hashes, dict) and set(hashes) == set(STATE_FILES) and all(
        isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes.values()),
        f"the sha256 of {', '.join(STATE_FILES)}")
    return record


def _read_state_file(path: Path, name: str, record: dict[str, Any]) -> bytes:
    content = read_input(path / name, "a checkpoint file", MAX_READ_BYTES)
    if hashlib.sha256(content).hexdigest() != record["sha256"][name]:
        raise DistillError(f"{path / name}: its sha256 is not the one checkpoint.json records (field 'sha256'): "
                           "the file was changed or copied from another checkpoint")
    return content


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder (tensors on the CPU), checking its files' sha256 and its fields."""
    import io

    from safetensors.torch import load as load_safetensors

    record = read_record(path)
    student_bytes = _read_state_file(path, "student.safetensors", record)
    state_bytes = _read_state_file(path, "training_state.pt", record)
    try:
        student = load_safetensors(student_bytes)
        state = torch.load(io.BytesIO(state_bytes), map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: safetensors and torch raise their own types
        raise DistillError(f"{path}: cannot read the checkpoint: {type(err).__name__}: {err}") from None
    where = path / "training_state.pt"
    _field(where, "(top level)", state, isinstance(state, dict) and {"optimizer", "rng", "data"} <= set(state),
           "an object with optimizer, rng and data")
    optimizer, rng, data = state["optimizer"], state["rng"], state["data"]
    _field(where, "optimizer", optimizer, isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
           and isinstance(optimizer.get("param_groups"), list), "an optimizer state (state, param_groups)")
    _field(where, "rng", rng, isinstance(rng, dict) and _is_byte_tensor(rng.get("torch")),
           "RNG states with a 'torch' uint8 tensor")
    _field(where, "data", data, isinstance(data, dict) and _is_byte_tensor(data.get("generator"))
           and _is_int(data.get("position")), "a data stream state (position, generator)")
    _field(where, "data.position", data["position"], data["position"] == record["data_position"],
           f"checkpoint.json's data_position {record['data_position']}")
    return Checkpoint(path, record, student, optimizer, rng, data)


def _is_byte_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for every key whose value differs."""
    keys = sorted(set(saved) | set(now))
    return [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in keys if saved.get(key) != now.get(key)]

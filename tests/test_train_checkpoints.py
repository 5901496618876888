"""Checkpoint folders: atomic writes, pruning, leftovers, clear errors, fingerprints, contract versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from distill import checkpoints
from distill.checkpoints import (
    CONTRACT_VERSIONS,
    file_fingerprint,
    list_checkpoints,
    load_checkpoint,
    remove_leftovers,
    save_checkpoint,
)
from distill.errors import DistillError

REPO = Path(__file__).resolve().parents[1]


def _save(out: Path, step: int, keep: int = 3) -> Path:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return save_checkpoint(out, {"step": step, "data_position": step, "config": {"seed": 0}, "identity": {}}, model, optimizer.state_dict(),
                           {"torch": torch.get_rng_state()}, {"position": step, "generator": torch.get_rng_state()},
                           keep)


def test_a_checkpoint_reads_back_what_was_saved(tmp_path: Path) -> None:
    path = _save(tmp_path, 7)
    loaded = load_checkpoint(path)
    assert path.name == "step-00000007" and loaded.step == 7 and loaded.data["position"] == 7
    assert set(loaded.student) == {"weight", "bias"}
    assert set(loaded.optimizer["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert torch.equal(loaded.rng["torch"], torch.get_rng_state())


def test_only_the_newest_keep_checkpoints_remain(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000006", "step-00000008"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_the_previous_checkpoint_and_nothing_else(tmp_path: Path, monkeypatch) -> None:
    _save(tmp_path, 3)

    def half_written(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 6)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000003"]
    assert load_checkpoint(list_checkpoints(tmp_path)[-1]).step == 3


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    _save(tmp_path, 3)
    for name in (".step-00000006.123.abcd1234.tmp", ".step-00000000.ffff0000.old"):
        (tmp_path / "checkpoints" / name).mkdir()
        (tmp_path / "checkpoints" / name / "student.safetensors").write_bytes(b"x")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003"]  # never taken for a checkpoint
    remove_leftovers(tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000003"]


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "training_state.pt").write_bytes(b"not a torch file"), "training_state.pt: its sha256"),
    (lambda p: (p / "checkpoint.json").write_text("{"), "not a readable checkpoint"),
    (lambda p: (p / "checkpoint.json").write_text('{"step": 1, "format": 99}'), "checkpoint format 99"),
])
def test_a_damaged_checkpoint_is_a_clear_error_naming_it(tmp_path: Path, damage, message) -> None:
    path = _save(tmp_path, 5)
    damage(path)
    with pytest.raises(DistillError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_fingerprints_tell_files_apart(tmp_path: Path) -> None:
    data = bytearray(range(256)) * 40000  # 10 MB
    a, b, c, d = tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "d"
    a.write_bytes(bytes(data))
    data[len(data) // 32 * 5 + 10] ^= 1  # inside the sixth of 32 evenly spaced blocks
    b.write_bytes(bytes(data))
    c.write_bytes(bytes(data) + b"\0")
    data[(1 << 20) + 70000] ^= 1  # past the first MiB, between two of those blocks' first 64 KiB
    d.write_bytes(bytes(data))
    assert file_fingerprint(a) == file_fingerprint(tmp_path.joinpath("a"))
    assert len({file_fingerprint(a), file_fingerprint(b), file_fingerprint(c), file_fingerprint(d)}) == 4
    with pytest.raises(DistillError, match="cannot read"):
        file_fingerprint(tmp_path / "missing")


def test_recorded_contract_versions_are_the_contracts_versions() -> None:
    found = {}
    for path in (REPO / "contracts").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[data["name"]] = data["version"]
    assert {name: found.get(name) for name in CONTRACT_VERSIONS} == CONTRACT_VERSIONS

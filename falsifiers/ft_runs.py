"""Running the code under test as a user does: `pv distill`, with a spy on the teacher it loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distill import train
from pv import cli


@dataclass
class DistillRun:
    """What one `pv distill` run did: exit code, output lines, files, and the teachers it loaded."""

    code: int
    stdout: list[str]
    stderr: str
    out_dir: Path
    teachers: list[Any] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return json.loads((self.out_dir / "run.json").read_text())

    def step_records(self) -> list[dict[str, Any]]:
        lines = (self.out_dir / "train_log.jsonl").read_text().splitlines()
        return [record for record in map(json.loads, lines) if record.get("record") == "step"]


def spy_on_teacher(monkeypatch: pytest.MonkeyPatch, on_load: Callable[[Any], None] | None = None
                   ) -> tuple[list[Any], list[str]]:
    """Record every teacher the training loop loads (and the backend it asked for)."""
    teachers: list[Any] = []
    backends: list[str] = []
    load = train.load_teacher

    def spy(source: Any, backend: str, **kwargs: Any) -> Any:
        teacher = load(source, backend, **kwargs)
        teachers.append(teacher)
        backends.append(backend)
        if on_load is not None:
            on_load(teacher)
        return teacher

    monkeypatch.setattr(train, "load_teacher", spy)
    return teachers, backends


def pv_distill(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, teacher: Path, student: Path,
               out_dir: Path, *args: str, on_load: Callable[[Any], None] | None = None) -> DistillRun:
    """Run ``pv distill`` in this process (so that mutants apply) and collect what it did."""
    with monkeypatch.context() as patch:
        teachers, backends = spy_on_teacher(patch, on_load)
        capsys.readouterr()
        code = cli.main(["distill", "--teacher", str(teacher), "--student", str(student), "--out", str(out_dir),
                         "--no-progress", *args])
        out, err = capsys.readouterr()
    return DistillRun(code, out.splitlines(), err, out_dir, teachers, backends)

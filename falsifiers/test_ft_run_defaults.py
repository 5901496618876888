"""Falsifiers of distill-training-v1's documented run (FT-TRAIN-013): ``pv distill`` given only its models
runs as its ``--help`` says, and checkpoints every S steps and at the end.

The defaults are spelled here as ``pv distill --help`` states them, and the test reads both the
help text and what a run records: a default changed in the code or in the help fails it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from distill.checkpoints import list_checkpoints
from pv import cli

RUN = ["distill.commands.distill", "distill.train", "distill.checkpoints", "distill.run_folder"]
#: the configuration a run records when only the models, the folder and --checkpoint-every are given
DOCUMENTED: dict[str, Any] = {
    "steps": 50, "batch": 2, "seq": 32, "temperature": 1.0, "lr": 1e-3, "device": "cpu", "seed": 0,
    "student_dtype": "f32", "grad_accum": 1, "keep": 3, "lr_schedule": "constant", "warmup_steps": 0,
    "max_grad_norm": 1.0, "log_every": 10, "student_format": "bf16", "amp": None, "backend": None,
    "eval_every": None, "holdout": None, "data": None}
#: option -> what its --help says of its default
HELP = {"--steps": "(default 50)", "--batch": "(default 2)", "--seq": "(default 32)",
        "--temperature": "(default 1.0)", "--lr": "(default 1e-3)", "--device": "(default cpu;",
        "--seed": "(default 0)", "--student-dtype": "(default f32", "--student-format": "(default bf16",
        "--grad-accum": "(default 1)", "--keep": "(default 3)", "--lr-schedule": "(default constant)",
        "--warmup-steps": "(default 0)", "--max-grad-norm": "(default 1.0;", "--log-every": "(default 10;",
        "--checkpoint-every": "every S steps and at the end", "--holdout": "(default 0.1 with --eval-every)"}


def _options(help_text: str) -> dict[str, str]:
    """Each option's help, whitespace joined, by the option's name."""
    found = {}
    for chunk in re.split(r"\n  (?=--)", help_text):
        name = chunk.split()[0].rstrip(",")
        found[name] = " ".join(chunk.split())
    return found


@pytest.mark.falsifies("FT-TRAIN-013", covers=RUN, mutants=["default-temperature-changed", "final-checkpoint-skipped"])
def test_a_run_given_only_its_models_runs_as_its_help_says(model_file, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["distill", "--help"]) == 0
    options = _options(capsys.readouterr().out)
    for option, said in HELP.items():
        assert said in options.get(option, ""), f"pv distill --help of {option}: {options.get(option)!r}"
    out = tmp_path / "run"
    assert cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student",
                     str(model_file("tiny-student")), "--out", str(out), "--checkpoint-every", "16",
                     "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    config = records[0]["config"]
    assert {name: config[name] for name in DOCUMENTED} == DOCUMENTED
    steps = [r for r in records if r["record"] == "step"]
    assert [r["step"] for r in steps] == list(range(50))
    assert {(r["tokens"], r["lr"]) for r in steps} == {(2 * 32, 1e-3)}
    # every 16 steps and at the end (step 50), the newest 3 kept
    assert [p.name for p in list_checkpoints(out)] == ["step-00000032", "step-00000048", "step-00000050"]
    assert json.loads((out / "run.json").read_text())["last_checkpoint"].endswith("step-00000050")

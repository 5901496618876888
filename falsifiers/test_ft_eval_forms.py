"""Falsifiers of distill-eval-v1's two command forms (FT-EVAL-008): ``pv eval --teacher T --student S
--baseline B --data D`` evaluates what ``pv eval RUN`` evaluates on the same rows; the text report says
what the JSON says; each bad option exits 2 naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pv import cli

ModelFile = Callable[[str], Path]
FORMS = ["distill.commands.eval"]
SEQ, WINDOWS, TEMPERATURE = 16, 40, 2.0
#: the text report's metric rows, by their JSON key
LABELS = {"kd_loss": f"KD loss (T={TEMPERATURE:g})", "ce": "cross-entropy (nats)", "perplexity": "perplexity",
          "top1_agreement": "top-1 agreement"}


def _pv(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run(model_file: ModelFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-step run with held-out rows (4 of 40 windows) and its data."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("eval-forms")
    np.save(folder / "ids.npy", np.random.default_rng(8).integers(0, 1024, size=WINDOWS * SEQ, dtype=np.int64))
    code = cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student",
                     str(model_file("tiny-student")), "--data", str(folder / "ids.npy"), "--out", str(folder / "run"),
                     "--steps", "8", "--eval-every", "4", "--seq", str(SEQ), "--lr", "3e-3", "--temperature",
                     str(TEMPERATURE), "--no-progress"])
    torch.set_num_threads(previous)
    assert code == 0
    return folder / "run"


def _held_out_file(run: Path, path: Path) -> Path:
    """The run's held-out windows, in its order, as a token file."""
    held = json.loads((run / "run.json").read_text())["held_out"]
    ids = np.load(run.parent / "ids.npy")[: WINDOWS * SEQ].reshape(WINDOWS, SEQ)
    np.save(path, ids[held["indices"]].reshape(-1))
    return path


@pytest.mark.falsifies("FT-EVAL-008", covers=FORMS, mutants=["eval-pair-temperature-ignored"])
def test_the_pair_form_evaluates_what_the_run_form_does(run: Path, model_file: ModelFile, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _pv(capsys, "eval", run, "--format", "json")
    assert code in (0, 1), err
    by_run = json.loads(out)
    code, out, err = _pv(capsys, "eval", "--teacher", model_file("tiny-teacher"), "--student",
                         run / "student.safetensors", "--baseline", run / "initial_student.gguf", "--data",
                         _held_out_file(run, tmp_path / "held.npy"), "--seq", SEQ, "--temperature", TEMPERATURE,
                         "--format", "json")
    assert code in (0, 1), err
    by_pair = json.loads(out)
    assert by_pair["rows"] == by_run["rows"] == 4 and by_pair["temperature"] == by_run["temperature"] == TEMPERATURE
    assert by_pair["verdict"] == by_run["verdict"]
    for side in ("student", "baseline"):
        assert by_pair["metrics"][side] == pytest.approx(by_run["metrics"][side], rel=1e-9), side


@pytest.mark.falsifies("FT-EVAL-008", covers=FORMS, mutants=["eval-text-swaps-sides"])
def test_the_text_report_says_what_the_json_says(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _pv(capsys, "eval", run, "--format", "json")
    data = json.loads(out)
    text_code, text, err = _pv(capsys, "eval", run)
    assert text_code == code and err == ""
    lines = text.splitlines()
    assert lines[0] == (f"pv eval: {data['verdict'].upper()}: student {run / 'student.safetensors'} against "
                        f"baseline {run / 'initial_student.gguf'}, teacher {data['teacher']}")
    assert lines[1].startswith(f"held-out data: {data['rows']} of {data['rows_held_out']} rows, "
                               f"{data['positions_held_out']} positions")
    student, baseline = data["metrics"]["student"], data["metrics"]["baseline"]
    for key, label in LABELS.items():
        row = next(line for line in lines if line.startswith(label))
        numbers = [float(x) for x in row[len(label):].split()]
        want = [student[key], baseline[key], student[key] - baseline[key]]
        assert numbers == pytest.approx(want, rel=1e-5, abs=1e-9), (key, row)
    assert f"positions: {student['positions']} (cross-entropy {student['ce_positions']})" in text
    assert f"a KD loss {data['margin']:g} below the baseline's" in text
    assert re.search(rf"a uniform guess scores {student['uniform_kd_loss']:.6g}$", text, re.M)
    assert [line[len("reason: "):] for line in lines if line.startswith("reason: ")] == data["reasons"]


@pytest.mark.falsifies("FT-EVAL-008", covers=FORMS, mutants=["eval-nan-temperature-accepted"])
def test_each_bad_option_exits_2_naming_it(run: Path, model_file: ModelFile, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    held = _held_out_file(run, tmp_path / "held.npy")
    pair = ["--teacher", model_file("tiny-teacher"), "--student", run / "student.safetensors"]
    cases = [
        ([run, "--seq", "1"], "--seq must be an integer >= 2"),
        ([run, "--batch", "0"], "--batch must be an integer >= 1"),
        ([run, "--max-rows", "0"], "--max-rows must be an integer >= 1"),
        ([run, "--margin", "1"], "--margin must be a fraction in [0, 1)"),
        ([run, "--margin", "-0.01"], "--margin must be a fraction in [0, 1)"),
        ([run, "--margin", "nan"], "--margin must be a fraction in [0, 1)"),
        ([run, "--temperature", "0"], "--temperature must be a finite number > 0"),
        ([run, "--temperature", "nan"], "--temperature must be a finite number > 0"),
        ([run, "--temperature", "inf"], "--temperature must be a finite number > 0"),
        ([*pair, "--data", held], "give --baseline B"),
        ([*pair, "--baseline", run / "initial_student.gguf"], "give a run folder, or --teacher, --student and --data"),
        ([tmp_path / "nothing"], "not a run folder"),
    ]
    for argv, want in cases:
        code, out, err = _pv(capsys, "eval", *argv)
        assert code == 2 and want in err and out == "" and "Traceback" not in err, (argv, code, err)

"""`pv distill` beyond one process: --nproc through torch's launcher, --amp, --resume, bad options."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill import train
from pv.cli import main as pv_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _steps(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["record"] == "step"]


def _summary(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def pair(tmp_path_factory, one_thread) -> tuple[Path, Path]:
    """The tiny preset pair, built once for the module."""
    return train.build_preset_pair("tiny", tmp_path_factory.mktemp("pair"), 0)


@pytest.fixture
def tiny_argv(pair):
    """``tiny_argv(out, *options)``: the argv of a tiny run of the pair into ``out``."""

    def argv(out: Path, *options: str) -> list[str]:
        return ["distill", "--teacher", str(pair[0]), "--student", str(pair[1]), "--seq", "8", "--out", str(out),
                "--no-progress", *options]

    return argv


@pytest.mark.slow  # three Python processes import torch: 8-25 s on 2 shared cores
def test_nproc_2_runs_two_ranks_through_the_torch_launcher(tmp_path: Path, tiny_argv) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "pv", *tiny_argv(out, "--steps", "3", "--batch", "1",
                                                            "--checkpoint-every", "3", "--nproc", "2")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("completed 3 steps") == 1  # rank 1 prints nothing
    summary = _summary(out)
    assert (summary["status"], summary["world_size"], summary["steps_completed"]) == ("completed", 2, 3)
    assert [r["tokens"] for r in _steps(out)] == [2 * 8] * 3  # 2 ranks x batch 1 x seq 8 per step


def test_nproc_refuses_bad_input_once_before_any_rank_starts(tmp_path: Path, capsys, tiny_argv) -> None:
    assert pv_main(tiny_argv(tmp_path / "run", "--steps", "0", "--nproc", "2")) == 2
    err = capsys.readouterr().err
    assert err.count("steps must be an integer from 1 to") == 1 and not (tmp_path / "run").exists()
    assert pv_main(tiny_argv(tmp_path / "run", "--nproc", "0")) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


def test_nproc_under_torchrun_is_refused(tmp_path: Path, capsys, monkeypatch, tiny_argv) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert pv_main(tiny_argv(tmp_path / "run", "--nproc", "2")) == 2
    assert "do not give it under torchrun" in capsys.readouterr().err


def test_an_incomplete_torchrun_environment_is_a_clear_error(tmp_path: Path, capsys, monkeypatch,
                                                             tiny_argv) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert pv_main(tiny_argv(tmp_path / "run", "--steps", "1")) == 2
    assert "MASTER_PORT not set" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--grad-accum", "0", "grad_accum must be an integer from 1 to 2147483647"),
    ("--keep", "0", "keep must be an integer from 1 to 2147483647"),
    ("--checkpoint-every", "-1", "checkpoint_every must be an integer from 1 to 2147483647"),
    ("--lr", "1e300", "lr must be a number > 0 and <= 3.4028234663852886e+38, got 1e+300"),  # overflowed float32
    ("--temperature", "1e300", "temperature must be a number > 0 and <= 1000.0"),
    ("--seed", "99999999999999999999999", "seed must be an integer from 0 to"),  # overflowed torch's seed
    ("--steps", "99999999999999999999999", "steps must be an integer from 1 to 2147483647"),
])
def test_bad_option_values_exit_2_without_output(tmp_path: Path, capsys, option, value, message, tiny_argv) -> None:
    assert pv_main(tiny_argv(tmp_path / "run", option, value)) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    (("--batch", "1000000"), "of logits and token ids per step"),  # would allocate terabytes at the first step
    # the stream hands over batch x grad-accum rows at once: 512 GB of ids (the check divided by grad-accum)
    (("--grad-accum", "1000000000"), "of logits and token ids per step"),
    (("--data", "/dev/zero"), "/dev/zero: cannot read data: not a regular file"),  # would read forever
])
def test_inputs_that_cannot_be_served_are_refused_before_step_0(tmp_path: Path, capsys, options, message,
                                                               tiny_argv) -> None:
    assert pv_main(tiny_argv(tmp_path / "run", "--steps", "1", *options)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "train_log.jsonl").exists() and not (tmp_path / "run" / "student.safetensors").exists()


def test_amp_bf16_runs_the_student_under_autocast(tmp_path: Path, tiny_argv) -> None:
    assert pv_main(tiny_argv(tmp_path / "f32", "--steps", "2")) == 0
    assert pv_main(tiny_argv(tmp_path / "amp", "--steps", "2", "--amp", "bf16")) == 0
    plain, amp = [r["loss"] for r in _steps(tmp_path / "f32")], [r["loss"] for r in _steps(tmp_path / "amp")]
    assert all(math.isfinite(x) for x in amp)
    assert plain != amp and abs(plain[0] - amp[0]) < 0.05 * plain[0]  # bf16 rounding, not another run


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{tmp}/none"], "holds no run to resume"),
    (["--resume", "{tmp}/done", "--out", "{tmp}/other"], "do not give another --out"),
    (["--resume", "{tmp}/done"], "give --steps N with N > 2"),
    (["--resume", "{tmp}/plain", "--steps", "5"], "completed without checkpoints"),
])
def test_resume_usage_errors_exit_2(tmp_path: Path, capsys, argv, message, tiny_argv) -> None:
    assert pv_main(tiny_argv(tmp_path / "done", "--steps", "2", "--checkpoint-every", "2")) == 0
    assert pv_main(tiny_argv(tmp_path / "plain", "--steps", "2")) == 0
    capsys.readouterr()
    assert pv_main(["distill", "--no-progress", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    assert message in capsys.readouterr().err


def test_a_run_interrupted_before_its_first_checkpoint_keeps_the_steps_done(tmp_path: Path, capsys, monkeypatch,
                                                                            tiny_argv) -> None:
    """Ctrl-C during step 2 (its rows already read) writes a final checkpoint of steps 0-1; the resume
    gives the uninterrupted run's student bit for bit (one thread), so the data stream was rewound."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    step = train._step

    def interrupted(*args):
        if args[5] == 2:
            raise KeyboardInterrupt
        return step(*args)

    with monkeypatch.context() as patch:
        patch.setattr(train, "_step", interrupted)
        assert pv_main(tiny_argv(out, "--steps", "4", "--checkpoint-every", "3")) == 130
    assert (_summary(out)["status"], _summary(out)["last_checkpoint"]) == ("interrupted", "checkpoints/step-00000002")
    assert "final checkpoint at step 2" in _summary(out)["error"]
    assert pv_main(tiny_argv(out, "--steps", "4")) == 2
    assert "--resume" in capsys.readouterr().err
    assert pv_main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert [r["step"] for r in _steps(out)] == [0, 1, 2, 3]
    assert (_summary(out)["status"], _summary(out)["resumed_from_step"]) == ("completed", 2)
    assert pv_main(tiny_argv(tmp_path / "whole", "--steps", "4", "--checkpoint-every", "3")) == 0
    got, want = load_file(out / "student.safetensors"), load_file(tmp_path / "whole" / "student.safetensors")
    assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_a_run_with_checkpoints_leaves_its_curves_and_summary(tmp_path: Path, tiny_argv) -> None:
    from distill.curves import PLOT_FILE, SUMMARY_MD

    out = tmp_path / "run"
    assert pv_main(tiny_argv(out, "--steps", "4", "--checkpoint-every", "2")) == 0
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # decoded in test_train_curves
    text = (out / SUMMARY_MD).read_text()
    assert "| status | completed |" in text and "| steps | 4 of 4 |" in text
    assert "| last checkpoint | checkpoints/step-00000004 |" in text

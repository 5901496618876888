"""Training users expect: warm-up and cosine decay, gradient clipping, progress lines, a memory estimate,
the explicit dequantized teacher memory-checked, a resume that remembers --nproc, one writer of the log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill import parallel, train
from pv.cli import main as pv_main
from tiny_runs import distill_argv, one_thread, pair  # noqa: F401  (fixtures)




def _steps(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["record"] == "step"]


def test_warmup_and_cosine_decay_follow_the_hugging_face_schedule(pair, tmp_path):
    """The logged lr of each step against transformers' get_cosine_schedule_with_warmup (an independent
    implementation): 3 warm-up steps of 10, peak 2e-3."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    assert pv_main(distill_argv(pair, out, "--steps", "10", "--lr", "2e-3", "--lr-schedule", "cosine",
                         "--warmup-steps", "3")) == 0
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=10)
    want = []
    for _ in range(10):
        want.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    got = [r["lr"] for r in _steps(out)]
    # Hugging Face's warm-up starts at 0 (step t has t / W); ours at lr / W (step t has (t + 1) / W),
    # as torchtune does, so that step 0 learns: compare the warm-up against that, the decay exactly.
    assert got[:3] == pytest.approx([2e-3 * (t + 1) / 3 for t in range(3)], rel=1e-12)
    assert got[3:] == pytest.approx(want[3:], rel=1e-9, abs=1e-15)


def test_the_gradient_norm_is_logged_and_clipping_slows_the_student(pair, tmp_path):
    """Clipped to 1e-12, AdamW's steps fall into its epsilon and the student hardly moves; unclipped it moves."""
    free, clipped = tmp_path / "free", tmp_path / "clipped"
    assert pv_main(distill_argv(pair, free, "--steps", "3", "--max-grad-norm", "0")) == 0
    assert pv_main(distill_argv(pair, clipped, "--steps", "3", "--max-grad-norm", "1e-12")) == 0
    norms = [r["grad_norm"] for r in _steps(free)]
    assert len(norms) == 3 and all(math.isfinite(n) and n > 1e-6 for n in norms)
    assert [r["grad_norm"] for r in _steps(clipped)][0] == pytest.approx(norms[0], rel=1e-5)  # measured before clipping

    from distill.model import build_model
    from distill.qwen2_gguf import read_gguf

    source = read_gguf(pair[1])
    start = {k: v.detach() for k, v in build_model(source.config, source.tensors).named_parameters()}

    def moved(out: Path) -> float:
        trained = load_file(out / "student.safetensors")
        return sum(float((trained[k] - start[k]).double().pow(2).sum()) for k in start) ** 0.5

    assert moved(clipped) < moved(free) / 100


def test_without_a_bar_a_progress_line_every_n_steps(pair, tmp_path, capsys):
    capsys.readouterr()
    assert pv_main(distill_argv(pair, tmp_path / "run", "--steps", "5", "--log-every", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line.split(":")[0] for line in lines if line.startswith("step ")]
    assert progress == ["step 2/5", "step 4/5", "step 5/5"]
    assert any(line.startswith("estimate: peak memory about") for line in lines)
    assert lines.index(next(l for l in lines if l.startswith("estimate:"))) < lines.index(
        next(l for l in lines if l.startswith("first step:")))
    header = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[0])
    assert header["estimate"]["peak_bytes"] > header["estimate"]["student_state_bytes"] > 0


def test_an_explicit_dequant_backend_is_memory_checked_unless_forced(pair, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "_free_bytes", lambda device: 4 * 1024**3 + 1024)  # the reserve and no more
    out = tmp_path / "run"
    assert pv_main(distill_argv(pair, out, "--steps", "1", "--backend", "dequant")) == 2
    err = capsys.readouterr().err
    assert "backend dequant: the dequantized teacher needs" in err and "--force" in err and not out.exists()
    assert pv_main(distill_argv(pair, out, "--steps", "1", "--backend", "dequant", "--force")) == 0


def _make_two_rank_folder(pair, out: Path) -> None:
    """A 1-rank run of batch 2 made to look like the 2-rank run of batch 1 it equals (global batch 2)."""
    assert pv_main(distill_argv(pair, out, "--steps", "2", "--checkpoint-every", "2", "--batch", "1")) == 0
    record_path = out / "checkpoints" / "step-00000002" / "checkpoint.json"
    record = json.loads(record_path.read_text())
    record["config"]["nproc"] = 2
    record["identity"]["global_batch"] = 2
    record_path.write_text(json.dumps(record))


def test_a_resume_launches_the_ranks_the_run_had(pair, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _make_two_rank_folder(pair, out)
    launched = []
    monkeypatch.setattr(parallel, "launch", lambda nproc, argv: launched.append((nproc, argv)) or 0)
    assert pv_main(["distill", "--resume", str(out), "--steps", "3", "--no-progress"]) == 0
    assert [nproc for nproc, _ in launched] == [2] and "--resume" in launched[0][1]
    assert "resuming with --nproc 2" in capsys.readouterr().out


def test_a_resume_launched_with_other_ranks_names_the_option(pair, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _make_two_rank_folder(pair, out)
    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)  # one rank under a launcher: no relaunch
    capsys.readouterr()
    assert pv_main(["distill", "--resume", str(out), "--steps", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "global_batch: 2 -> 1" in err and "give --nproc 2" in err


def test_only_rank_0_opens_the_log(pair, tmp_path, monkeypatch):
    """Two forked gloo ranks: every open of train_log.jsonl for writing is recorded with its rank."""
    import builtins
    import os

    opened = tmp_path / "opened"
    real_open = builtins.open

    def spying_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("train_log.jsonl") and any(c in mode for c in "wa+"):
            with real_open(opened, "a") as fh:
                fh.write(os.environ.get("RANK", "?") + "\n")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)
    real_write_text = Path.write_text

    def spying_write_text(self, *args, **kwargs):
        if ".train_log.jsonl." in self.name:
            with real_open(opened, "a") as fh:
                fh.write(os.environ.get("RANK", "?") + "\n")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spying_write_text)
    out = tmp_path / "run"
    codes = parallel.fork_ranks(2, lambda: pv_main(distill_argv(pair, out, "--steps", "1", "--batch", "1")),
                                tmp_path / "logs", timeout_s=120)
    assert codes == [0, 0], [p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*.log"))]
    assert sorted(set(opened.read_text().split())) == ["0"]

"""Falsifiers of distill-training-v1 on CPU: data-parallel and accumulated steps equal one big step,
a resumed run equals an uninterrupted one, a killed or stopped run keeps a consistent folder.

Ranks and killed runs are forks of this process (``distill.parallel.start_ranks``)
running ``pv distill``: two gloo ranks on one intra-op thread each, tiny models.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distill import train
from distill.checkpoints import list_checkpoints, load_checkpoint
from distill.qwen2_gguf import read_gguf
from distill.model import build_model
from distill.parallel import fork_ranks, start_ranks
from distill.synth import make_model_file
from pv import cli

ModelFile = Callable[[str], Path]
#: DTRAIN-EQ-001/002: optimizer moments, max |a - b| <= MOMENT_RTOL * max |b| per tensor
MOMENT_RTOL = 5e-4
#: DTRAIN-EQ-001/002: || W_a - W_b || <= WEIGHT_RTOL * || W_b - W_0 || over all parameters
WEIGHT_RTOL = 1e-3
#: DTRAIN-EQ-001/002: logged losses, |a - b| <= LOSS_RTOL * |b|
LOSS_RTOL = 1e-5
COMMON = ("--seq", "16", "--lr", "3e-3", "--temperature", "2", "--no-progress")


@pytest.fixture(autouse=True)
def one_thread():
    """The forked ranks run one intra-op thread; so does this process (the same arithmetic)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def pair(model_file: ModelFile) -> tuple[Path, Path]:
    return model_file("tiny-teacher"), model_file("tiny-student")


def _argv(pair: tuple[Path, Path], out: Path, *options: str) -> list[str]:
    return ["distill", "--teacher", str(pair[0]), "--student", str(pair[1]), "--out", str(out), *COMMON, *options]


#: Hang guards only (a run that never ends, or never reaches its step, fails the test): far above
#: the need, so that load cannot reach them (the longest test of this file, two ranks, takes about
#: 5 s on a 2-core CPU).
HANG_SECONDS = 600


def _pv(argv: list[str]) -> int:
    return cli.main(argv)


def _ranks(nproc: int, argv: list[str], logs: Path) -> None:
    codes = fork_ranks(nproc, lambda: _pv(argv), logs, timeout_s=HANG_SECONDS)
    output = "\n".join(p.read_text() for p in sorted(logs.glob("rank*.log")))
    assert codes == [0] * nproc, f"rank exit codes {codes}:\n{output[-3000:]}"


def _step_records(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["record"] == "step"]


def _initial_weights(student: Path) -> dict[str, torch.Tensor]:
    source = read_gguf(student)
    return {k: v.detach() for k, v in build_model(source.config, source.tensors).named_parameters()}


def _assert_same_training(got: Path, want: Path, initial: dict[str, torch.Tensor], evidence) -> None:
    """DTRAIN-EQ-001/002: the same losses, optimizer moments and student, within the stated tolerances."""
    a, b = load_checkpoint(list_checkpoints(got)[-1]), load_checkpoint(list_checkpoints(want)[-1])
    assert a.step == b.step and a.record["data_position"] == b.record["data_position"]
    losses_a, losses_b = [r["loss"] for r in _step_records(got)], [r["loss"] for r in _step_records(want)]
    assert len(losses_a) == len(losses_b) == a.step
    loss_err = max(abs(x - y) / abs(y) for x, y in zip(losses_a, losses_b))
    moment_err = 0.0
    for index, want_state in b.optimizer["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            diff = (a.optimizer["state"][index][key] - want_state[key]).abs().max()
            moment_err = max(moment_err, float(diff / want_state[key].abs().max()))
    apart = sum(float((a.student[k] - b.student[k]).double().pow(2).sum()) for k in b.student) ** 0.5
    moved = sum(float((b.student[k] - initial[k]).double().pow(2).sum()) for k in b.student) ** 0.5
    evidence("loss_max_rel_diff", loss_err)
    evidence("moment_max_rel_diff", moment_err)
    evidence("weight_diff_over_displacement", apart / moved)
    assert loss_err <= LOSS_RTOL, f"logged losses differ by {loss_err:.3g} relative"
    assert moment_err <= MOMENT_RTOL, f"AdamW moments differ by {moment_err:.3g} of their largest entry"
    assert apart <= WEIGHT_RTOL * moved, f"students {apart:.3g} apart, {moved:.3g} from their start"


@pytest.mark.falsifies("FT-TRAIN-001", mutants=[
    "dp-gradients-not-averaged", "dp-gradients-summed", "dp-same-shard", "dp-loss-of-rank-0"])
def test_two_ranks_of_batch_b_train_like_one_rank_of_batch_2b(pair, tmp_path: Path, evidence) -> None:
    steps = ("--steps", "4", "--checkpoint-every", "4")
    assert _pv(_argv(pair, tmp_path / "one", "--batch", "4", *steps)) == 0
    _ranks(2, _argv(pair, tmp_path / "two", "--batch", "2", *steps), tmp_path / "logs")
    summary = json.loads((tmp_path / "two" / "run.json").read_text())
    assert (summary["status"], summary["world_size"]) == ("completed", 2)
    assert not (tmp_path / "logs" / "rank1.log").read_text().strip(), "rank 1 printed output"
    _assert_same_training(tmp_path / "two", tmp_path / "one", _initial_weights(pair[1]), evidence)


@pytest.mark.falsifies("FT-TRAIN-002", mutants=["accum-loss-not-divided"])
def test_k_micro_batches_of_b_train_like_one_batch_of_kb(pair, tmp_path: Path, evidence) -> None:
    steps = ("--steps", "4", "--checkpoint-every", "4")
    assert _pv(_argv(pair, tmp_path / "one", "--batch", "6", *steps)) == 0
    assert _pv(_argv(pair, tmp_path / "acc", "--batch", "2", "--grad-accum", "3", *steps)) == 0
    _assert_same_training(tmp_path / "acc", tmp_path / "one", _initial_weights(pair[1]), evidence)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """Six windows of 16 ids: with batch 2 an epoch is 3 steps, so step 10 lies inside epoch 3."""
    ids = np.random.default_rng(5).integers(0, 1024, size=6 * 16 + 5)
    np.save(tmp_path / "ids.npy", ids)
    return tmp_path / "ids.npy"


def _final(out: Path) -> tuple[dict[str, torch.Tensor], dict]:
    checkpoint = load_checkpoint(list_checkpoints(out)[-1])
    return load_file(out / "student.safetensors"), checkpoint.optimizer


def _assert_bit_identical(got: Path, want: Path) -> None:
    """DTRAIN-EQ-003: the same student, optimizer state and logged losses, bit for bit."""
    (student_a, opt_a), (student_b, opt_b) = _final(got), _final(want)
    assert set(student_a) == set(student_b)
    differ = [k for k in student_b if not torch.equal(student_a[k], student_b[k])]
    assert differ == [], f"student tensors differ: {differ[:4]}"
    for index, state in opt_b["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a["state"][index][key], state[key]), (index, key)
    got_steps, want_steps = _step_records(got), _step_records(want)
    assert [r["step"] for r in got_steps] == [r["step"] for r in want_steps]
    assert [r["loss"] for r in got_steps] == [r["loss"] for r in want_steps]


@pytest.mark.falsifies("FT-TRAIN-003", mutants=[
    "resume-optimizer-not-restored", "resume-rng-not-restored", "resume-data-position-restarted"])
def test_ten_steps_and_a_resume_for_ten_equal_twenty_steps(pair, token_file: Path, tmp_path: Path) -> None:
    options = ("--batch", "2", "--data", str(token_file), "--checkpoint-every", "10")
    assert _pv(_argv(pair, tmp_path / "whole", "--steps", "20", *options)) == 0
    assert _pv(_argv(pair, tmp_path / "split", "--steps", "10", *options)) == 0
    assert _pv(["distill", "--resume", str(tmp_path / "split"), "--steps", "20", "--no-progress"]) == 0
    _assert_bit_identical(tmp_path / "split", tmp_path / "whole")


def _blocking_run(argv: list[str], block_at: int, marker: Path) -> Callable[[], int]:
    """A ``pv distill`` whose step ``block_at`` waits (until the test stops it) after saying so in ``marker``."""

    def target() -> int:
        step = train._step

        def blocking_step(*args):
            if args[5] == block_at:
                marker.write_text(str(os.getpid()))
                time.sleep(HANG_SECONDS)
            return step(*args)

        train._step = blocking_step
        return _pv(argv)

    return target


def _start_blocked(argv: list[str], block_at: int, tmp_path: Path):
    marker = tmp_path / "blocked"
    (process,) = start_ranks(1, _blocking_run(argv, block_at, marker), tmp_path / "logs")
    deadline = time.monotonic() + HANG_SECONDS
    while not marker.exists():
        assert process.exitcode is None, f"the run ended early ({process.exitcode}): {_log(tmp_path)}"
        assert time.monotonic() < deadline, "the run did not reach its blocking step"
        time.sleep(0.02)
    return process


def _log(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "rank0.log").read_text()[-2000:]


def _hidden(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


@pytest.mark.falsifies("FT-TRAIN-004", mutants=[
    "checkpoint-summary-not-updated", "checkpoint-keep-ignored", "resume-log-not-trimmed",
    "resume-optimizer-not-restored"])
def test_sigkill_between_checkpoints_loses_only_the_steps_since_the_last(pair, tmp_path: Path) -> None:
    options = ("--batch", "2", "--steps", "20", "--checkpoint-every", "3", "--keep", "2")
    assert _pv(_argv(pair, tmp_path / "whole", *options)) == 0
    out = tmp_path / "killed"
    process = _start_blocked(_argv(pair, out, *options), 14, tmp_path)  # steps 0-13 done, checkpoint at 12
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL

    assert [p.name for p in list_checkpoints(out)] == ["step-00000009", "step-00000012"]
    assert _hidden(out) == [], "temporary files left behind"
    summary = json.loads((out / "run.json").read_text())
    assert (summary["status"], summary["steps_completed"]) == ("running", 12)
    assert summary["last_checkpoint"] == "checkpoints/step-00000012"
    assert [r["step"] for r in _step_records(out)] == list(range(14))
    assert load_checkpoint(list_checkpoints(out)[-1]).record["data_position"] == 12 * 2

    assert _pv(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert [r["step"] for r in _step_records(out)] == list(range(20))
    summary = json.loads((out / "run.json").read_text())
    assert (summary["status"], summary["steps_completed"], summary["resumed_from_step"]) == ("completed", 20, 12)
    _assert_bit_identical(out, tmp_path / "whole")


@pytest.mark.falsifies("FT-TRAIN-005", mutants=[
    "signals-sigterm-sighup-unhandled", "stop-without-final-checkpoint", "stop-data-not-rewound"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_the_run_as_interrupted_and_it_resumes(pair, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "run"
    options = ("--batch", "2", "--steps", "12", "--checkpoint-every", "4")
    assert _pv(_argv(pair, tmp_path / "whole", *options)) == 0
    process = _start_blocked(_argv(pair, out, *options), 6, tmp_path)  # stopped in step 6, its rows read
    os.kill(process.pid, signum)
    process.join(HANG_SECONDS)
    assert process.exitcode == 128 + signum, (process.exitcode, _log(tmp_path))
    summary = json.loads((out / "run.json").read_text())
    assert (summary["status"], summary["steps_completed"]) == ("interrupted", 6)
    assert signal.Signals(signum).name in summary["error"]
    assert summary["last_checkpoint"] == "checkpoints/step-00000006"  # the final checkpoint of the steps done
    assert "--resume" in _log(tmp_path)

    assert _pv(_argv(pair, out, *options)) == 2  # a plain rerun into the folder is refused
    assert _pv(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert [r["step"] for r in _step_records(out)] == list(range(12))
    summary = json.loads((out / "run.json").read_text())
    assert (summary["status"], summary["resumed_from_step"]) == ("completed", 6)
    _assert_bit_identical(out, tmp_path / "whole")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.falsifies("FT-TRAIN-006", mutants=["resume-identity-unchecked"])
def test_a_resume_with_changed_files_or_options_is_refused_naming_the_difference(
        pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _pv(_argv(pair, out, "--batch", "2", "--steps", "2", "--checkpoint-every", "2")) == 0
    other_student = make_model_file(tmp_path / "other.gguf", "tiny", "f32", None, 99, vocab_rows=1024)
    narrower_teacher = make_model_file(tmp_path / "narrow.gguf", "tiny", "q4_k_m", None, 21, vocab_rows=1024 + 64)
    before = _snapshot(out)
    refusals = [
        (["--student", str(other_student)], ["student:"]),
        (["--teacher", str(narrower_teacher)], ["teacher:", "vocabulary:"]),
        (["--lr", "0.002"], ["lr: 0.003 -> 0.002"]),
        (["--batch", "3"], ["global_batch: 2 -> 3"]),
        (["--temperature", "1"], ["temperature: 2.0 -> 1.0"]),
    ]
    for options, named in refusals:
        capsys.readouterr()
        code = _pv(["distill", "--resume", str(out), "--steps", "4", "--no-progress", *options])
        err = capsys.readouterr().err
        assert code == 2, (options, code, err)
        assert "cannot resume" in err and all(text in err for text in named), (options, err)
        assert "Traceback" not in err
        assert _snapshot(out) == before, f"{options}: the refused resume wrote into the run folder"
    # The same global batch as 1 rank x 2 micro-batches of 1 is the same run: accepted.
    assert _pv(["distill", "--resume", str(out), "--steps", "4", "--batch", "1", "--grad-accum", "2",
                "--no-progress"]) == 0


@pytest.fixture
def long_token_file(tmp_path: Path) -> Path:
    """400 000 ids (3.2 MB as .npy): far beyond the first MiB and 32 blocks of 64 KiB."""
    np.save(tmp_path / "long.npy", np.random.default_rng(7).integers(0, 1024, size=400_000))
    return tmp_path / "long.npy"


def _flip_id_at_byte(path: Path, offset: int) -> bytes:
    """Change the id whose bytes hold ``offset`` to another valid id; the file's old bytes."""
    before = path.read_bytes()
    data = bytearray(before)
    low = 128 + (offset - 128) // 8 * 8  # the low byte of the little-endian int64 id (after the 128-byte header)
    data[low] ^= 1  # an id of [0, 1024) stays one
    path.write_bytes(bytes(data))
    return before


@pytest.mark.falsifies("FT-TRAIN-007", mutants=["fingerprint-sampled", "fingerprint-skips-first-mib"])
def test_one_changed_byte_anywhere_in_an_input_refuses_the_resume(pair, long_token_file: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _pv(_argv(pair, out, "--batch", "2", "--steps", "2", "--checkpoint-every", "2",
                     "--data", str(long_token_file))) == 0
    spacing = long_token_file.stat().st_size // 32
    # one byte inside the first MiB, one beyond it, both between the starts of 64 KiB blocks spaced size/32 apart
    for offset in (spacing + 70_000, 11 * spacing + 70_000):
        before = _flip_id_at_byte(long_token_file, offset)
        capsys.readouterr()
        code = _pv(["distill", "--resume", str(out), "--steps", "3", "--no-progress"])
        err = capsys.readouterr().err
        long_token_file.write_bytes(before)
        assert code == 2 and "cannot resume" in err and "data:" in err, (offset, code, err)


@pytest.mark.falsifies("FT-TRAIN-008", mutants=["default-keep-changed", "default-batch-changed"])
def test_the_documented_defaults_of_keep_and_batch_hold(pair, tmp_path: Path) -> None:
    """README and --help: --keep 3, --batch 2 (spelled here, not read from the code)."""
    out = tmp_path / "run"
    assert _pv(_argv(pair, out, "--steps", "5", "--checkpoint-every", "1")) == 0
    assert [p.name for p in list_checkpoints(out)] == [f"step-{s:08d}" for s in (3, 4, 5)]
    seq = int(COMMON[COMMON.index("--seq") + 1])
    assert {r["tokens"] for r in _step_records(out)} == {2 * seq}


@pytest.mark.falsifies("FT-TRAIN-009", mutants=["checkpoint-hash-unchecked"])
def test_a_checkpoint_file_copied_from_another_checkpoint_is_refused(pair, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _pv(_argv(pair, out, "--batch", "2", "--steps", "2", "--checkpoint-every", "1")) == 0
    older, newer = list_checkpoints(out)
    for name in ("student.safetensors", "training_state.pt"):
        saved = (newer / name).read_bytes()
        (newer / name).write_bytes((older / name).read_bytes())
        before = _snapshot(out)
        capsys.readouterr()
        code = _pv(["distill", "--resume", str(out), "--steps", "3", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and f"{name}: its sha256" in err and "Traceback" not in err, (name, code, err)
        assert _snapshot(out) == before
        (newer / name).write_bytes(saved)

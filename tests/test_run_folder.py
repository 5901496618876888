"""Run folders that defend themselves: claimed by one run, links and foreign files refused, checkpoints
checked by sha256 and field by field, inputs that cannot hang or kill the run. Tiny pair, a few steps."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill import train
from pv.cli import main as pv_main
from tiny_runs import distill_argv, one_thread, pair  # noqa: F401  (fixtures)

#: a run's checkpoint files whose sha256 its checkpoint.json records (spelled here, not imported)
STATE_FILES = ("student.safetensors", "training_state.pt")




@pytest.fixture(scope="module")
def finished(pair, tmp_path_factory) -> Path:
    """A 2-step run with checkpoints step-1 and step-2."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert pv_main(distill_argv(pair, out, "--steps", "2", "--checkpoint-every", "1")) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def _resume(out: Path, capsys, *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = pv_main(["distill", "--resume", str(out), "--steps", "3", "--no-progress", *options])
    return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- data loss ------------------------------------------------------------------------------------


def test_a_symlinked_checkpoints_folder_is_refused_and_nothing_it_points_to_is_deleted(run_copy, tmp_path, capsys):
    victim = tmp_path / "elsewhere"
    shutil.move(run_copy / "checkpoints", victim)
    (victim / ".precious.tmp").mkdir()
    (victim / ".precious.tmp" / "data").write_text("keep me")
    (run_copy / "checkpoints").symlink_to(victim)
    code, err = _resume(run_copy, capsys)
    assert code == 2 and "checkpoints: is a link" in err and "Traceback" not in err
    assert (victim / ".precious.tmp" / "data").read_text() == "keep me"


@pytest.mark.parametrize("name", ["summary.md", "curves.png"])
def test_a_new_run_does_not_replace_files_it_would_write(pair, tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    assert pv_main(distill_argv(pair, out, "--steps", "1")) == 2
    assert name in capsys.readouterr().err
    assert (out / name).read_bytes() == b"the user's own file" and sorted(os.listdir(out)) == [name]


@pytest.mark.parametrize("name", ["teacher.gguf", "student.gguf"])
def test_a_preset_pair_does_not_replace_model_files(tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"the user's own model")
    assert pv_main(["distill", "--preset-pair", "tiny", "--out", str(out), "--steps", "1", "--no-progress"]) == 2
    assert name in capsys.readouterr().err
    assert (out / name).read_bytes() == b"the user's own model" and sorted(os.listdir(out)) == [name]


def test_a_second_run_into_a_folder_another_run_holds_is_refused(pair, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)  # the other run's claim, taken the way flock(1) takes it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert pv_main(distill_argv(pair, out, "--steps", "1")) == 2
    finally:
        os.close(fd)
    assert "in use by another run" in capsys.readouterr().err and os.listdir(out) == []


def test_make_model_refuses_to_write_over_its_vocabulary(vocab_dir, tmp_path, capsys):
    vocab = tmp_path / "vocab.gguf"
    shutil.copy(vocab_dir / "ggml-vocab-qwen2.gguf", vocab)
    before = vocab.read_bytes()
    code = pv_main(["make-model", "--preset", "tiny", "--quant", "f32", "--vocab", str(vocab), "-o", str(vocab)])
    assert code == 2 and "vocabulary file" in capsys.readouterr().err
    assert vocab.read_bytes() == before


# --- silent wrong data ------------------------------------------------------------------------------


def test_a_student_copied_from_another_checkpoint_is_refused(run_copy, capsys):
    older, newer = run_copy / "checkpoints" / "step-00000001", run_copy / "checkpoints" / "step-00000002"
    shutil.copy(older / "student.safetensors", newer / "student.safetensors")
    before = _snapshot(run_copy)
    code, err = _resume(run_copy, capsys)
    assert code == 2 and "step-00000002/student.safetensors: its sha256" in err and "Traceback" not in err
    assert _snapshot(run_copy) == before


# --- crafted run folders: one clear error each, never a traceback -------------------------------------


def _newest(out: Path) -> Path:
    return out / "checkpoints" / "step-00000002"


def _edit_record(out: Path, edit: Callable[[dict], object]) -> None:
    path = _newest(out) / "checkpoint.json"
    record = json.loads(path.read_text())
    result = edit(record)
    path.write_text(json.dumps(record if result is None else result))


def _rehash(out: Path) -> None:
    """Record the sha256 of the state files as they are now: the field checks, not the hash, must refuse."""
    hashes = {name: hashlib.sha256((_newest(out) / name).read_bytes()).hexdigest() for name in STATE_FILES}
    _edit_record(out, lambda r: r.update(sha256=hashes))


def _edit_state(out: Path, edit: Callable[[dict], object]) -> None:
    path = _newest(out) / "training_state.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    _rehash(out)


def _edit_student(out: Path, edit: Callable[[dict], object]) -> None:
    path = _newest(out) / "student.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)
    _rehash(out)


def _edit_log(out: Path, edit: Callable[[list[dict]], object]) -> None:
    path = out / "train_log.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    edit(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _first_step(records: list[dict]) -> dict:
    return next(r for r in records if r["record"] == "step")


def _first_moment(state: dict) -> dict:
    return next(iter(state["optimizer"]["state"].values()))


CORRUPTIONS = {
    "record-not-an-object": (lambda o: _edit_record(o, lambda r: [r]), "checkpoint.json: not a readable checkpoint"),
    "record-step-a-string": (lambda o: _edit_record(o, lambda r: r.update(step="2")), "field 'step'"),
    "record-step-of-another-folder": (lambda o: _edit_record(o, lambda r: r.update(step=7)), "field 'step'"),
    "record-negative-position": (lambda o: _edit_record(o, lambda r: r.update(data_position=-1)),
                                 "field 'data_position'"),
    "record-config-a-list": (lambda o: _edit_record(o, lambda r: r.update(config=[])), "field 'config'"),
    "record-config-lr-a-string": (lambda o: _edit_record(o, lambda r: r["config"].update(lr="fast")),
                                  "field 'config.lr'"),
    "record-config-steps-a-float": (lambda o: _edit_record(o, lambda r: r["config"].update(steps=2.5)),
                                    "field 'config.steps'"),
    "record-identity-null": (lambda o: _edit_record(o, lambda r: r.update(identity=None)), "field 'identity'"),
    "record-sha256-missing": (lambda o: _edit_record(o, lambda r: r.pop("sha256") and None), "field 'sha256'"),
    "state-not-a-dict": (lambda o: _edit_state(o, lambda s: s.pop("optimizer")), "field '(top level)'"),
    "state-optimizer-groups-empty": (lambda o: _edit_state(o, lambda s: s["optimizer"].update(param_groups=[])),
                                     "field 'optimizer.param_groups'"),
    "state-moment-wrong-shape": (lambda o: _edit_state(o, lambda s: _first_moment(s).update(
        exp_avg=torch.zeros(3))), "exp_avg"),
    "state-moment-for-no-parameter": (lambda o: _edit_state(o, lambda s: s["optimizer"]["state"].update(
        {999: _first_moment(s)})), "field 'optimizer.state'"),
    "state-rng-floats": (lambda o: _edit_state(o, lambda s: s["rng"].update(torch=torch.zeros(4))), "field 'rng'"),
    "state-rng-bytes-of-another-length": (lambda o: _edit_state(o, lambda s: s["rng"].update(
        torch=torch.zeros(4, dtype=torch.uint8))), "field 'rng'"),
    "state-position-not-the-records": (lambda o: _edit_state(o, lambda s: s["data"].update(position=3)),
                                       "field 'data.position'"),
    "state-generator-of-another-length": (lambda o: _edit_state(o, lambda s: s["data"].update(
        generator=torch.zeros(4, dtype=torch.uint8))), "field 'data'"),
    "student-of-another-dtype": (lambda o: _edit_student(o, lambda t: t.update(
        {k: v.double() for k, v in t.items()})), "float64"),
    "student-tensor-missing": (lambda o: _edit_student(o, lambda t: t.pop(sorted(t)[0])), "is missing"),
    "student-extra-tensor": (lambda o: _edit_student(o, lambda t: t.update(extra=torch.zeros(1))),
                             "not a tensor of the student"),
    "log-step-a-string": (lambda o: _edit_log(o, lambda rs: _first_step(rs).update(step="0")),
                          "train_log.jsonl: line 2: field 'step'"),
    "log-loss-missing": (lambda o: _edit_log(o, lambda rs: _first_step(rs).pop("loss")), "field 'loss'"),
    "log-header-not-a-header": (lambda o: _edit_log(o, lambda rs: rs[0].update(record="step")),
                                "train_log.jsonl: line 1"),
    "log-not-utf8": (lambda o: (o / "train_log.jsonl").write_bytes(b"\xff\xfe\n"), "train_log.jsonl: line 1"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_crafted_run_folder_is_one_clear_error(run_copy, capsys, corruption):
    corrupt, named = CORRUPTIONS[corruption]
    corrupt(run_copy)
    before = _snapshot(run_copy)
    code, err = _resume(run_copy, capsys)
    assert code == 2, err
    assert "Traceback" not in err and named in err, err
    assert err.count("\n") == 1, f"not one message: {err}"
    assert _snapshot(run_copy) == before, "the refused resume changed the run folder"


# --- inputs that hang or kill a run ------------------------------------------------------------------


def _in_child(target: Callable[[], int], stderr: Path, timeout_s: float = 120) -> int:
    """``target()``'s exit code in a forked process writing its stderr to ``stderr``; a process still
    running after ``timeout_s`` is killed."""

    def child() -> None:
        sys.stderr = open(stderr, "w", encoding="utf-8")
        code = target()
        sys.stderr.flush()
        os._exit(code)

    context = multiprocessing.get_context("fork")
    process = context.Process(target=child)
    process.start()
    process.join(timeout_s)
    if process.exitcode is None:
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        pytest.fail(f"still running after {timeout_s} s: it hangs")
    return process.exitcode


def test_a_fifo_as_data_is_refused_without_blocking(pair, tmp_path):
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    err = tmp_path / "stderr"

    def target() -> int:
        return pv_main(distill_argv(pair, tmp_path / "out", "--steps", "1", "--data", str(fifo)))

    assert _in_child(target, err, timeout_s=60) == 2
    assert "ids.fifo: cannot read data: not a regular file" in err.read_text()


def test_a_teacher_truncated_during_a_run_is_a_clear_error_not_sigbus(pair, tmp_path):
    teacher = tmp_path / "teacher.gguf"
    shutil.copy(pair[0], teacher)
    out, err = tmp_path / "out", tmp_path / "stderr"

    def target() -> int:
        step = train._step

        def truncating_step(*args):
            if args[5] == 1:
                os.truncate(teacher, 4096)
            return step(*args)

        train._step = truncating_step
        return pv_main(["distill", "--teacher", str(teacher), "--student", str(pair[1]), "--seq", "8", "--out",
                        str(out), "--no-progress", "--backend", "q4k-native", "--steps", "3",
                        "--checkpoint-every", "1"])

    code = _in_child(target, err)
    message = err.read_text()
    assert code == 2, (code, message)
    assert "teacher.gguf: the teacher file changed during the run" in message and "Traceback" not in message
    summary = json.loads((out / "run.json").read_text())
    assert summary["status"] == "failed" and "teacher file changed" in summary["error"]

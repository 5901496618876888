"""The distillation run: alignment before step 0, backend choice, data, logs, checkpoint, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distill import train
from distill.errors import (
    BackendSelectionError, DistillError, InsufficientMemoryError, TrainingDiverged, VocabAlignmentError,
)
from distill.qwen2_gguf import read_gguf
from distill.model import build_model
from distill.synth import PRESETS, make_model_file
from distill.teacher import native_resident_bytes
from distill.run_folder import CHECKPOINT_FILE, LOG_FILE, SUMMARY_FILE
from distill.train import DistillConfig, run_distillation

from distill.data import TokenStream, read_token_file
from pv.cli import main as pv_main
from tiny_runs import one_thread  # noqa: F401  (autouse: the module runs single-threaded)

#: The documented override variable and auto's reserve (README, backend contract), spelled here
#: rather than imported from the code under test, so a renamed variable or a changed reserve fails.
ENV_VAR = "DISTILL_TEACHER_BACKEND"
DEQUANT_RESERVE_BYTES = 4 * 1024**3

TINY_ROWS = PRESETS["tiny"].vocab_size


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Q4_K_M teacher with 128 extra rows and an f32 student, synthetic tokens."""
    folder = tmp_path_factory.mktemp("pair")
    teacher = make_model_file(folder / "teacher.gguf", "tiny", "q4_k_m", None, 1, vocab_rows=TINY_ROWS + 128)
    student = make_model_file(folder / "student.gguf", "tiny", "f32", None, 2, vocab_rows=TINY_ROWS)
    return teacher, student


def _config(pair, out: Path, **changes) -> DistillConfig:
    base = dict(out_dir=out, teacher=pair[0], student=pair[1], steps=2, batch=1, seq=8, lr=1e-3)
    return DistillConfig(**{**base, **changes})


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]


def _summary(out: Path) -> dict:
    return json.loads((out / SUMMARY_FILE).read_text())


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# --- vocabulary alignment at start-up -------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen2_teacher(vocab_dir, tmp_path_factory) -> Path:
    """A Q4_K_M teacher on the real qwen2 vocabulary padded to 152064 rows, like Qwen2.5-Coder-7B."""
    path = tmp_path_factory.mktemp("qwen2") / "teacher.gguf"
    return make_model_file(path, "tiny", "q4_k_m", vocab_dir / "ggml-vocab-qwen2.gguf", 1, vocab_rows=152064)


@pytest.mark.slow
def test_qwen2_152064_teacher_and_151936_student_align_by_truncation(qwen2_teacher, vocab_dir, tmp_path):
    """The story's pair in miniature: both from the real qwen2 vocabulary, the teacher 128 rows wider.
    The student file is quantized too: its weights are expanded into trainable f32 parameters."""
    student = make_model_file(tmp_path / "s.gguf", "tiny", "q4_k_m", vocab_dir / "ggml-vocab-qwen2.gguf", 2,
                              vocab_rows=151936)
    lines: list[str] = []
    result = run_distillation(_config((qwen2_teacher, student), tmp_path / "out", steps=1, seq=4), echo=lines.append)
    header = _records(tmp_path / "out")[0]
    assert header["alignment"]["teacher_len"] == 152064 and header["alignment"]["student_len"] == 151936
    assert header["alignment"]["truncated_rows"] == 128 and header["alignment"]["effective_vocab"] == 151936
    assert len(result.losses) == 1 and math.isfinite(result.losses[0]) and result.losses[0] > 0
    assert any("teacher logits cut to 151936" in line for line in lines)
    assert result.status == "completed" and (tmp_path / "out" / CHECKPOINT_FILE).exists()


@pytest.mark.slow
def test_qwen2_teacher_and_llama_bpe_student_are_refused_before_step_0(qwen2_teacher, vocab_dir, tmp_path):
    student = make_model_file(tmp_path / "s.gguf", "tiny", "q4_k_m", vocab_dir / "ggml-vocab-llama-bpe.gguf", 2)
    out = tmp_path / "out"
    with pytest.raises(VocabAlignmentError, match=r"index 410: teacher 'ith', student '00'"):
        run_distillation(_config((qwen2_teacher, student), out))
    assert not out.exists()  # refused before anything was written


def test_student_larger_than_teacher_is_refused(pair, tmp_path):
    teacher, student = pair
    out = tmp_path / "out"
    with pytest.raises(VocabAlignmentError, match="more than the teacher's"):
        run_distillation(_config((student, teacher), out))  # swapped: the student has 128 more rows
    assert not out.exists()


def test_a_model_file_without_tokens_is_refused(pair, tmp_path):
    from distill.qwen2_gguf import write_gguf
    from distill.synth import synth_tensors

    bare = tmp_path / "bare.gguf"
    write_gguf(bare, PRESETS["tiny"], synth_tensors(PRESETS["tiny"], "f32", 3), None)
    with pytest.raises(VocabAlignmentError, match=f"{bare} has no tokenizer.ggml.tokens"):
        run_distillation(_config((pair[0], bare), tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- backend choice --------------------------------------------------------------------------------


def test_start_lines_name_backend_and_alignment_before_the_first_step(pair, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    lines: list[str] = []
    run_distillation(_config(pair, tmp_path / "out", steps=1), echo=lines.append)
    backend_lines = [line for line in lines if line.startswith("teacher backend: ")]
    assert len(backend_lines) == 1 and backend_lines[0].startswith("teacher backend: dequant (auto: dequantized copy fits")
    assert any(line.startswith("vocabulary: ") and "cut to" in line for line in lines)
    header = _records(tmp_path / "out")[0]
    assert header["backend"]["backend"] == "dequant" and header["backend"]["device_class"] == "unified"


@pytest.mark.parametrize(
    "env, flag, expected",
    [("q4k-native", None, "q4k-native"), ("q4k-native", "dequant", "dequant"), (None, "q4k-native", "q4k-native")],
)
def test_flag_wins_over_environment(pair, tmp_path, monkeypatch, env, flag, expected):
    if env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, env)
    result = run_distillation(_config(pair, tmp_path / "out", steps=1, backend=flag), echo=lambda _: None)
    assert result.decision.backend == expected
    assert _records(tmp_path / "out")[0]["backend"]["backend"] == expected


def _elements(path: Path) -> int:
    return sum(math.prod(t.shape) for t in read_gguf(path).tensors.values())


@pytest.mark.parametrize("expected", ["dequant", "q4k-native"])
def test_auto_on_a_discrete_device_counts_the_students_training_state(pair, tmp_path, monkeypatch, expected):
    """free_bytes handed to the rule = device free memory - the student's f32 weights, gradients and
    two AdamW moments (16 bytes per weight): free memory that leaves room for the reserve, that state
    and the q4k-native teacher, but not the expanded one, must not choose dequant."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    dequant_bytes, state = 4 * _elements(pair[0]), 16 * _elements(pair[1])
    native = native_resident_bytes(read_gguf(pair[0]), torch.float32)
    free = DEQUANT_RESERVE_BYTES + state + (dequant_bytes if expected == "dequant" else native)
    monkeypatch.setattr(train, "classify_device", lambda device: "discrete")
    monkeypatch.setattr(train, "_free_bytes", lambda device: free)
    result = run_distillation(_config(pair, tmp_path / "out", steps=1), echo=lambda _: None)
    backend = _records(tmp_path / "out")[0]["backend"]
    assert (backend["free_bytes"], backend["dequant_bytes"]) == (free - state, dequant_bytes)
    assert result.decision.backend == expected == backend["backend"]


def test_auto_refuses_before_loading_when_no_backend_fits(pair, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    state = 16 * _elements(pair[1])
    native = native_resident_bytes(read_gguf(pair[0]), torch.float32)
    monkeypatch.setattr(train, "_free_bytes", lambda device: DEQUANT_RESERVE_BYTES + state + native - 1)
    monkeypatch.setattr(train, "load_teacher", lambda *args, **kwargs: pytest.fail("the teacher was loaded"))
    with pytest.raises(InsufficientMemoryError, match=f"{native} bytes"):
        run_distillation(_config(pair, tmp_path / "out", steps=1), echo=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_invalid_environment_value_is_refused_before_anything_is_written(pair, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(BackendSelectionError, match="'fast'.*auto, dequant, q4k-native"):
        run_distillation(_config(pair, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- data ------------------------------------------------------------------------------------------


def test_token_files_npy_and_text_give_the_same_ids(tmp_path):
    ids = np.arange(40, dtype=np.int32).reshape(4, 10) % 17
    np.save(tmp_path / "ids.npy", ids)
    (tmp_path / "ids.txt").write_text("\n".join(" ".join(map(str, row)) for row in ids))
    from_npy = read_token_file(tmp_path / "ids.npy", 17, 8)
    from_txt = read_token_file(tmp_path / "ids.txt", 17, 8)
    assert from_npy.tolist() == from_txt.tolist() == ids.reshape(-1).tolist()


def test_batches_are_windows_of_the_token_stream():
    ids = torch.arange(1000, 1100)
    stream = TokenStream(ids, 5000, seq=7, seed=1)
    for _ in range(5):
        batch = stream.take(3)
        assert batch.shape == (3, 7)
        for row in batch:
            start = int(row[0]) - 1000
            assert row.tolist() == ids[start : start + 7].tolist()


def test_random_batches_are_seeded_and_in_range():
    first = [TokenStream(None, 50, 9, seed=4).take(2) for _ in range(2)]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], TokenStream(None, 50, 9, seed=5).take(2))
    assert int(first[0].min()) >= 0 and int(first[0].max()) < 50


@pytest.mark.parametrize(
    "content, message",
    [("1 2 3 99 4 5 6 7 8", r"token id 99 at position 3 is outside the vocabulary \[0, 50\)"),
     ("1 2 x 4 5 6 7 8", "cannot read token ids"),
     ("1 2 3", "fewer than one sequence of 8"),
     ("1 2 -1 3 4 5 6 7", "token id -1 at position 2")],
)
def test_bad_token_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "ids.txt"
    path.write_text(content)
    with pytest.raises(DistillError, match=message) as err:
        read_token_file(path, 50, 8)
    assert str(path) in str(err.value)


def test_float_npy_is_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(DistillError, match="must be integers"):
        read_token_file(tmp_path / "f.npy", 50, 8)


def test_a_run_reads_its_batches_from_the_data_file(pair, tmp_path, monkeypatch):
    ids = np.arange(TINY_ROWS - 40, TINY_ROWS, dtype=np.int64)  # only the last 40 ids of the vocabulary
    np.save(tmp_path / "ids.npy", ids)
    calls: list[torch.Tensor] = []
    monkeypatch.setattr(train, "_step", lambda student, teacher, opt, input_ids, *a: calls.append(input_ids) or 1.0)
    run_distillation(_config(pair, tmp_path / "out", steps=3, batch=2, data=tmp_path / "ids.npy"), echo=lambda _: None)
    assert len(calls) == 3
    for batch in calls:
        assert batch.shape == (2, 8) and int(batch.min()) >= TINY_ROWS - 40


def test_data_ids_outside_the_student_vocabulary_are_refused_without_output(pair, tmp_path):
    (tmp_path / "ids.txt").write_text(" ".join(str(i) for i in range(TINY_ROWS, TINY_ROWS + 20)))
    with pytest.raises(DistillError, match=f"token id {TINY_ROWS} at position 0"):
        run_distillation(_config(pair, tmp_path / "out", data=tmp_path / "ids.txt"), echo=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_bf16_student_trains_and_is_saved_in_bf16(pair, tmp_path):
    result = run_distillation(_config(pair, tmp_path / "out", steps=2, student_dtype="bf16"), echo=lambda _: None)
    assert result.status == "completed" and all(math.isfinite(x) for x in result.losses)
    assert {t.dtype for t in load_file(tmp_path / "out" / CHECKPOINT_FILE).values()} == {torch.bfloat16}


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [({"steps": 0}, "steps must be"), ({"batch": -1}, "batch must be"), ({"temperature": 0.0}, "temperature"),
     ({"lr": float("inf")}, "lr must be"), ({"device": "tpu"}, "device"), ({"student_dtype": "f16"}, "dtype"),
     ({"preset_pair": "tiny"}, "either both"), ({"seq": 10**9}, "context length")],
)
def test_bad_configuration_is_refused_without_output(pair, tmp_path, changes, message):
    with pytest.raises(DistillError, match=message):
        run_distillation(_config(pair, tmp_path / "out", **changes), echo=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_cuda_requested_without_cuda_is_refused(pair, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DistillError, match="no CUDA device"):
        run_distillation(_config(pair, tmp_path / "out", device="cuda"))


def test_an_output_folder_holding_a_run_is_refused(pair, tmp_path):
    out = tmp_path / "out"
    run_distillation(_config(pair, out, steps=1), echo=lambda _: None)
    with pytest.raises(DistillError, match="already holds a run"):
        run_distillation(_config(pair, out, steps=1), echo=lambda _: None)


# --- failures leave a consistent folder ------------------------------------------------------------


def _failing_kd(monkeypatch, at_step: int, make_failure):
    calls = {"n": 0}
    original = train.kd_loss

    def kd(*args, **kwargs):
        loss = original(*args, **kwargs)
        calls["n"] += 1
        return make_failure(loss) if calls["n"] == at_step + 1 else loss

    monkeypatch.setattr(train, "kd_loss", kd)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_the_run_with_a_clear_message(pair, tmp_path, monkeypatch, bad):
    _failing_kd(monkeypatch, 2, lambda loss: loss * bad)
    out = tmp_path / "out"
    with pytest.raises(TrainingDiverged, match=f"became {bad} at step 2"):
        run_distillation(_config(pair, out, steps=5), echo=lambda _: None)
    summary = _summary(out)
    assert summary["status"] == "failed" and summary["steps_completed"] == 2
    assert "TrainingDiverged" in summary["error"] and summary["checkpoint"] is None
    assert [r["step"] for r in _records(out)[1:]] == [0, 1]
    assert not (out / CHECKPOINT_FILE).exists() and _leftovers(out) == []


def test_ctrl_c_leaves_a_consistent_folder(pair, tmp_path, monkeypatch):
    def interrupt(loss):
        raise KeyboardInterrupt

    _failing_kd(monkeypatch, 3, interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_distillation(_config(pair, out, steps=6), echo=lambda _: None)
    summary = _summary(out)
    assert (summary["status"], summary["steps_completed"], summary["checkpoint"]) == ("interrupted", 3, None)
    assert len(_records(out)) == 1 + 3
    assert not (out / CHECKPOINT_FILE).exists() and _leftovers(out) == []


def test_a_failing_checkpoint_write_leaves_no_partial_file(pair, tmp_path, monkeypatch):
    import safetensors.torch

    def broken_save(model, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", broken_save)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        run_distillation(_config(pair, out, steps=2), echo=lambda _: None)
    assert not (out / CHECKPOINT_FILE).exists() and _leftovers(out) == []
    summary = _summary(out)
    assert (summary["status"], summary["checkpoint"], summary["steps_completed"]) == ("failed", None, 2)
    assert "disk full" in summary["error"]


# --- a full run through the command line -----------------------------------------------------------


def _decreases(losses: list[float]) -> bool:
    return np.mean(losses[-10:]) < 0.95 * np.mean(losses[:10])


def test_pv_distill_tiny_preset_learns_and_leaves_a_complete_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    out = tmp_path / "run"
    code = pv_main(["distill", "--preset-pair", "tiny", "--steps", "50", "--batch", "2", "--seq", "16",
                    "--lr", "3e-3", "--temperature", "2", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sum(line.startswith("teacher backend: ") for line in captured.out.splitlines()) == 1

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["teacher.gguf", "student.gguf", LOG_FILE, CHECKPOINT_FILE, SUMMARY_FILE, "curves.png", "summary.md",
         "student-trained.gguf", "config.json", "model.safetensors", "initial_student.gguf"]
    )
    header, *steps = _records(out)
    assert header["record"] == "header" and header["backend"]["backend"] == "dequant"
    assert header["alignment"]["truncated_rows"] == 128
    assert [r["step"] for r in steps] == list(range(50))
    assert all(r["step_time_s"] > 0 and r["rss_bytes"] > 0 and math.isfinite(r["loss"]) for r in steps)
    losses = [r["loss"] for r in steps]
    assert _decreases(losses), losses

    summary = _summary(out)
    assert (summary["status"], summary["steps_completed"], summary["checkpoint"]) == ("completed", 50, CHECKPOINT_FILE)
    assert summary["final_loss"] == losses[-1]

    # The checkpoint is the trained student: loadable, complete, and different from the initial weights.
    student_file = read_gguf(out / "student.gguf")
    initial = dict(build_model(student_file.config, student_file.tensors).named_parameters())
    trained = load_file(out / CHECKPOINT_FILE)
    assert set(trained) == set(initial)
    unchanged = [name for name, p in initial.items() if torch.equal(p, trained[name])]
    assert unchanged == []


def test_pv_distill_usage_errors_exit_2(tmp_path, capsys):
    assert pv_main(["distill", "--out", str(tmp_path / "o")]) == 2
    assert "give --teacher and --student" in capsys.readouterr().err
    missing = tmp_path / "missing.gguf"
    assert pv_main(["distill", "--teacher", str(missing), "--student", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_pv_distill_output_path_that_is_a_file_exits_2(pair, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code = pv_main(["distill", "--teacher", str(pair[0]), "--student", str(pair[1]), "--out", str(target)])
    assert code == 2
    assert f"output folder {target} exists and is not a folder" in capsys.readouterr().err


def test_pv_distill_divergence_exits_1(pair, tmp_path, capsys, monkeypatch):
    _failing_kd(monkeypatch, 0, lambda loss: loss * float("nan"))
    code = pv_main(["distill", "--teacher", str(pair[0]), "--student", str(pair[1]), "--steps", "3",
                    "--seq", "8", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 1
    assert "became nan at step 0" in capsys.readouterr().err


@pytest.mark.gpu
def test_pv_distill_tiny_preset_on_cuda(tmp_path, capsys):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "run"
    code = pv_main(["distill", "--preset-pair", "tiny", "--steps", "50", "--batch", "2", "--seq", "16",
                    "--lr", "3e-3", "--temperature", "2", "--device", "cuda", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    header, *steps = _records(out)
    assert header["device"].startswith("cuda")
    assert all(r["cuda_peak_allocated_bytes"] > 0 for r in steps)
    assert _decreases([r["loss"] for r in steps])
    assert _summary(out)["status"] == "completed" and (out / CHECKPOINT_FILE).exists()

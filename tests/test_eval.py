"""pv eval's inputs: the held-out split's rule, a safetensors student with a Hugging Face config.json, and the
usage and input errors that exit 2 (the verdicts themselves are falsified in falsifiers/test_ft_eval.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from distill.data import split_documents
from distill.errors import DistillError
from distill.evaluate import spread_rows
from distill.qwen2_gguf import read_gguf
from distill.model import build_model
from distill.synth import make_model_file
from pv.cli import main as pv_main

SEQ = 8
#: the tiny preset as a Hugging Face Qwen2 config.json spells it (written here, not taken from the code)
TINY_HF_CONFIG = {
    "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 1024, "hidden_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 2048, "tie_word_embeddings": True,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    return (make_model_file(folder / "teacher.gguf", "tiny", "q4_k_m", None, 1, vocab_rows=1152),
            make_model_file(folder / "student.gguf", "tiny", "f32", None, 2, vocab_rows=1024))


@pytest.fixture(scope="module")
def ids_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ids.npy"
    np.save(path, np.random.default_rng(0).integers(0, 1024, size=20 * SEQ, dtype=np.int64))
    return path


def _pv(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = pv_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- the split ------------------------------------------------------------------------------------


def test_split_holds_out_the_documented_count_and_covers_every_document() -> None:
    for n, fraction, held in ((10, 0.1, 1), (10, 0.25, 2), (40, 0.1, 4), (3, 0.01, 1), (7, 0.5, 4)):
        train, out = split_documents(n, fraction, seed=11)
        assert len(out) == held, (n, fraction, out)
        assert sorted(train + out) == list(range(n)) and not set(train) & set(out)
        assert train == sorted(train) and out == sorted(out)


@pytest.mark.parametrize("n, fraction", [(1, 0.5), (2, 0.9), (10, 0.0), (10, 1.0), (10, True), (10, float("nan"))])
def test_split_refuses_what_leaves_nothing_to_train_or_hold_out(n, fraction) -> None:
    with pytest.raises(DistillError, match="held-out fraction|cannot hold out"):
        split_documents(n, fraction, seed=0)


# --- at most --max-rows held-out rows, spread evenly ---------------------------------------------------


def test_spread_rows_takes_evenly_spaced_rows_from_the_first() -> None:
    rows = torch.arange(10).reshape(10, 1)
    assert spread_rows(rows, 4).flatten().tolist() == [0, 2, 5, 7]  # 10 rows, every 2.5th, rounded down
    assert spread_rows(rows, 1).flatten().tolist() == [0]
    assert spread_rows(rows, 10).flatten().tolist() == list(range(10))
    assert spread_rows(rows, 50).flatten().tolist() == list(range(10))


def test_max_rows_limits_the_rows_evaluated_and_says_so(pair, ids_file, tmp_path, capsys) -> None:
    teacher, student = pair
    weights = _student_safetensors(student, tmp_path / "hf", 0.5)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(TINY_HF_CONFIG))
    common = ["eval", "--teacher", teacher, "--student", weights, "--baseline", student, "--data", ids_file,
              "--seq", SEQ]
    code, out, err = _pv(capsys, *common, "--max-rows", 3, "--format", "json")
    report = json.loads(out)
    assert code in (0, 1) and (report["rows"], report["rows_held_out"]) == (3, 20), err
    assert report["metrics"]["student"]["positions"] == report["metrics"]["baseline"]["positions"] == 3 * SEQ
    code, out, err = _pv(capsys, *common, "--max-rows", 3)
    assert f"held-out data: 3 of 20 rows, {3 * SEQ} positions" in out, err


# --- a safetensors student with its config ----------------------------------------------------------


def _student_safetensors(student_gguf: Path, folder: Path, scale: float) -> Path:
    """The student's GGUF weights, moved towards zero by ``scale``, as safetensors (a changed student)."""
    source = read_gguf(student_gguf)
    state = {k: v.detach() * scale for k, v in build_model(source.config, source.tensors).state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "student.safetensors"))
    return folder / "student.safetensors"


def test_a_safetensors_student_reads_its_config_json(pair, ids_file, tmp_path, capsys) -> None:
    teacher, student = pair
    weights = _student_safetensors(student, tmp_path / "hf", 0.5)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(TINY_HF_CONFIG))
    code, out, err = _pv(capsys, "eval", "--teacher", teacher, "--student", weights, "--baseline", student,
                         "--data", ids_file, "--seq", SEQ, "--format", "json")
    report = json.loads(out)
    assert code in (0, 1) and report["metrics"]["student"]["positions"] == 20 * SEQ, err
    assert not any("config" in reason or "does not fit" in reason for reason in report["reasons"])
    assert report["metrics"]["student"]["kd_loss"] != report["metrics"]["baseline"]["kd_loss"]


def test_a_config_json_of_another_shape_rejects_the_checkpoint(pair, ids_file, tmp_path, capsys) -> None:
    teacher, student = pair
    weights = _student_safetensors(student, tmp_path / "hf", 0.5)
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**TINY_HF_CONFIG, "intermediate_size": 384}))
    code, out, _ = _pv(capsys, "eval", "--teacher", teacher, "--student", weights, "--baseline", student,
                       "--data", ids_file, "--seq", SEQ, "--format", "json")
    assert code == 1 and any("size mismatch for blocks.0.mlp.gate.weight" in r for r in json.loads(out)["reasons"])


# --- usage and input errors: exit 2, one message, nothing written --------------------------------------


def test_usage_and_input_errors_exit_2_naming_what_is_wrong(pair, ids_file, tmp_path, capsys) -> None:
    teacher, student = pair
    cases = [
        (["eval"], "give a run folder, or --teacher, --student and --data"),
        (["eval", "--teacher", teacher, "--student", student, "--data", ids_file], "give --baseline"),
        (["eval", tmp_path / "nowhere"], "not a run folder"),
        (["eval", "--teacher", teacher, "--student", tmp_path / "missing.gguf", "--baseline", student,
          "--data", ids_file], "missing.gguf: student not found"),
        (["eval", "--teacher", teacher, "--student", student, "--baseline", student, "--data", ids_file,
          "--seq", "1"], "--seq must be an integer >= 2"),
        (["eval", "--teacher", teacher, "--student", student, "--baseline", student, "--data", ids_file,
          "--margin", "1.5"], "--margin must be a fraction"),
        (["eval", "--teacher", teacher, "--student", student, "--baseline", student, "--data", ids_file,
          "--max-rows", "0"], "--max-rows must be an integer >= 1"),
    ]
    for argv, message in cases:
        before = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = _pv(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, code, err)
        assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == before


def test_eval_every_needs_a_data_file(pair, tmp_path, capsys) -> None:
    code, _, err = _pv(capsys, "distill", "--teacher", pair[0], "--student", pair[1], "--out", tmp_path / "run",
                       "--steps", "2", "--seq", SEQ, "--eval-every", "1", "--no-progress")
    assert code == 2 and "need a data file" in err and not (tmp_path / "run").exists()


def test_a_run_without_held_out_data_asks_for_data_and_refuses_a_changed_data_file(pair, ids_file, tmp_path,
                                                                                   capsys) -> None:
    data, run = tmp_path / "ids.npy", tmp_path / "run"
    data.write_bytes(ids_file.read_bytes())
    code, _, err = _pv(capsys, "distill", "--teacher", pair[0], "--student", pair[1], "--out", run, "--data",
                       data, "--steps", "2", "--seq", SEQ, "--no-progress")
    assert code == 0, err
    assert (run / "initial_student.gguf").read_bytes() == pair[1].read_bytes()
    code, _, err = _pv(capsys, "eval", run)
    assert code == 2 and "held out no data" in err and "--data" in err
    np.save(data, np.arange(20 * SEQ, dtype=np.int64))  # the run's data file, replaced under the same name
    code, _, err = _pv(capsys, "eval", run, "--data", ids_file)
    assert code == 2 and f"{data}: the run's data changed since the run" in err, err

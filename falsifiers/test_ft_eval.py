"""Falsifiers of distill-eval-v1: the held-out metrics equal a float64 reference, a student passes only by
beating the student it started from on documents it never trained on, and every broken checkpoint fails
with its reason named.

Runs are tiny (a 2-layer model of 1024 rows) and go through ``pv distill`` and ``pv eval`` in this
process, so that the mutants apply.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from distill import data as data_module
from distill import evaluate as evaluate_module
from distill.data import split_documents
from distill.errors import DistillError
from distill.evaluate import EvalMetrics, evaluate, judge
from distill.model import build_model
from distill.qwen2_gguf import read_gguf
from distill.qwen2_gguf import write_gguf
from distill.synth import make_model_file, synth_tensors
from pv import cli

ModelFile = Callable[[str], Path]
#: the tiny preset as a Hugging Face Qwen2 config.json spells it
TINY_HF_CONFIG = {
    "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 1024, "hidden_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 2048, "tie_word_embeddings": True,
}
SEQ, WINDOWS, HOLDOUT = 16, 40, 0.1
#: the documented rule: round(fraction * documents) held out, at least one
HELD = max(1, round(HOLDOUT * WINDOWS))
TRAIN = ("--seq", str(SEQ), "--batch", "2", "--lr", "3e-3", "--temperature", "2", "--seed", "5", "--no-progress")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _token_file(path: Path, seed: int, windows: int = WINDOWS) -> Path:
    ids = np.random.default_rng(seed).integers(0, 1024, size=windows * SEQ, dtype=np.int64)
    np.save(path, ids)
    return path


def _pv(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _train(capsys, teacher: Path, student: Path, data: Path, out: Path, *options: str) -> None:
    code, _, err = _pv(capsys, "distill", "--teacher", teacher, "--student", student, "--data", data, "--out", out,
                       *TRAIN, *options)
    assert code == 0, err


def _eval_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out, err = _pv(capsys, "eval", *argv, "--format", "json")
    assert code in (0, 1), f"exit {code}: {err}"
    return code, json.loads(out)


@pytest.fixture(scope="module")
def trained(model_file: ModelFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-step run with a held-out split (built once; the mutants of its users do not touch training)."""
    folder = tmp_path_factory.mktemp("eval-run")
    data = _token_file(folder / "ids.npy", 1)
    out = folder / "run"
    code = cli.main(["distill", "--teacher", str(model_file("tiny-teacher")), "--student",
                     str(model_file("tiny-student")), "--data", str(data), "--out", str(out), "--steps", "24",
                     "--eval-every", "8", *TRAIN])
    assert code == 0
    return out


# --- FT-EVAL-001: the metrics ----------------------------------------------------------------------


class _Table(torch.nn.Module):
    """A student whose logits at a position are a fixed row per input token."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


class _Dropout(_Table):
    """A _Table whose logits are dropped at random in training mode, as a student with dropout would be."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(self.table[ids], 0.5, self.training)


class _Teacher:
    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


def _reference(s: np.ndarray, t: np.ndarray, ids: np.ndarray, T: float) -> tuple[float, float, float, float]:
    """KD loss, next-token cross-entropy, top-1 agreement and a uniform guess's KD loss in float64, from their
    definitions."""
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    log_p, log_q = log_softmax(t / T), log_softmax(s / T)
    kd = T * T * float((np.exp(log_p) * (log_p - log_q)).sum(axis=-1).mean())
    uniform = T * T * float((np.exp(log_p) * (log_p + np.log(t.shape[-1]))).sum(axis=-1).mean())
    log_s = log_softmax(s)
    nll = [-log_s[b, i, ids[b, i + 1]] for b in range(ids.shape[0]) for i in range(ids.shape[1] - 1)]
    agree = float((s.argmax(-1) == t.argmax(-1)).mean())
    return kd, float(np.mean(nll)), agree, uniform


@pytest.mark.falsifies("FT-EVAL-001", mutants=["eval-ce-not-shifted", "eval-kd-at-temperature-1"],
                       covers=["distill.evaluate:evaluate", "distill.evaluate:batch_sums", "distill.evaluate:batches",
                               "distill.evaluate:perplexity", "distill.evaluate:EvalMetrics"])
def test_metrics_equal_a_float64_reference(evidence) -> None:
    rng = np.random.default_rng(3)
    worst = 0.0
    for case in range(6):
        vocab, rows, seq = int(rng.integers(3, 40)), int(rng.integers(1, 5)), int(rng.integers(2, 9))
        T = float(rng.choice([0.5, 1.0, 2.0, 3.5]))
        s_table = rng.normal(0, 3, (vocab, vocab))
        t_table = rng.normal(0, 3, (vocab, vocab))
        ids = rng.integers(0, vocab, (rows, seq))
        got = evaluate(_Teacher(torch.tensor(t_table, dtype=torch.float32)),
                       _Table(torch.tensor(s_table, dtype=torch.float32)), torch.tensor(ids), T, batch=2)
        kd, ce, agree, uniform = _reference(s_table[ids], t_table[ids], ids, T)
        assert got.positions == rows * seq and got.ce_positions == rows * (seq - 1), case
        assert got.nonfinite_positions == 0
        for name, value, want in (("kd_loss", got.kd_loss, kd), ("ce", got.ce, ce),
                                  ("uniform_kd_loss", got.uniform_kd_loss, uniform)):
            error = abs(value - want) / max(abs(want), 1e-12)
            worst = max(worst, error)
            assert error <= 1e-5, f"case {case}: {name} {value} != {want} (T={T})"
        assert got.top1_agreement == agree, case
        assert got.to_json()["perplexity"] == pytest.approx(math.exp(ce), rel=1e-5), case
    # evaluated in eval mode (no dropout), the student's own mode given back
    table, ids = torch.tensor(rng.normal(0, 3, (7, 7)), dtype=torch.float32), torch.tensor(rng.integers(0, 7, (3, 5)))
    student = _Dropout(table)
    got = evaluate(_Teacher(table + 1.0), student, ids, 1.0)
    assert student.training, "the student's training mode was not restored"
    assert got == evaluate(_Teacher(table + 1.0), _Table(table), ids, 1.0)
    # a cross-entropy past float's exponent range is an infinite perplexity, not an OverflowError
    assert EvalMetrics(1.0, 1000.0, 0.5, 4, 3).to_json()["perplexity"] == math.inf
    evidence("metrics_max_rel_error", worst)


# --- FT-EVAL-002: non-finite positions -------------------------------------------------------------


@pytest.mark.falsifies("FT-EVAL-002", mutants=["eval-skips-nan-positions"],
                       covers=["distill.evaluate:evaluate", "distill.evaluate:batch_sums", "distill.evaluate:judge",
                               "distill.evaluate:EvalMetrics"])
def test_nan_positions_are_counted_not_skipped() -> None:
    rng = np.random.default_rng(4)
    vocab = 12
    s_table = torch.tensor(rng.normal(0, 2, (vocab, vocab)), dtype=torch.float32)
    t_table = s_table + 0.5 * torch.tensor(rng.normal(size=(vocab, vocab)), dtype=torch.float32)
    ids = torch.tensor(rng.integers(1, vocab, (3, 6)))
    ids[1, 2] = 0
    ids[2, 4] = ids[2, 5] = 0  # three positions in two rows: a count along another axis gives 4, not 3
    broken = s_table.clone()
    broken[0, 5], broken[0, 7] = math.nan, math.inf  # the logits after token 0 hold a NaN and an Inf
    baseline = evaluate(_Teacher(t_table), _Table(torch.zeros(vocab, vocab)), ids, 1.0)
    got = evaluate(_Teacher(t_table), _Table(broken), ids, 1.0)
    assert got.nonfinite_positions == 3 and got.positions == 18
    assert math.isnan(got.kd_loss) and math.isnan(got.ce) and math.isnan(got.top1_agreement)
    reasons = judge(got, baseline, 0.05)
    assert any("NaN or Inf at 3 of 18" in r for r in reasons), reasons
    # the verdict's own rule: at most (1 - margin) times the baseline's KD loss, on the same positions
    ok = EvalMetrics(0.95, 1.0, 0.5, 18, 15)
    assert judge(ok, EvalMetrics(1.0, 1.0, 0.5, 18, 15), 0.05) == []
    assert judge(EvalMetrics(0.951, 1.0, 0.5, 18, 15), EvalMetrics(1.0, 1.0, 0.5, 18, 15), 0.05) != []
    assert any("different positions" in r for r in judge(ok, EvalMetrics(1.0, 1.0, 0.5, 16, 14), 0.05))
    # one position is enough to judge on; none is not
    assert judge(EvalMetrics(0.9, 1.0, 1.0, 1, 0), EvalMetrics(1.0, 1.0, 1.0, 1, 0), 0.05) == []
    assert any("different positions" in r for r in judge(EvalMetrics(0.9, 1.0, 1.0, 0, 0),
                                                          EvalMetrics(1.0, 1.0, 1.0, 0, 0), 0.05))


# --- FT-EVAL-003: a trained run passes, its initial student fails --------------------------------------


@pytest.mark.falsifies("FT-EVAL-003", mutants=["eval-baseline-is-trained", "eval-structural-pass"],
                       covers=["distill.evaluate", "distill.students", "distill.commands.eval"])
def test_a_trained_run_passes_and_its_initial_student_fails(trained: Path, capsys, evidence) -> None:
    code, report = _eval_json(capsys, trained)
    student, baseline = report["metrics"]["student"], report["metrics"]["baseline"]
    assert code == 0 and report["verdict"] == "pass" and report["reasons"] == [], report
    assert report["baseline"] == str(trained / "initial_student.gguf")
    assert student["kd_loss"] <= 0.95 * baseline["kd_loss"]
    assert student["positions"] == baseline["positions"] == HELD * SEQ
    assert report["margin"] == 0.05, "the documented default margin"
    for key in ("kd_loss", "ce", "top1_agreement"):
        assert report["metrics"]["difference"][key] == pytest.approx(student[key] - baseline[key], abs=1e-12)
    # the same student as a Hugging Face folder: safetensors with a config.json spelled here
    folder = trained.parent / "hf"
    folder.mkdir(exist_ok=True)
    (folder / "student.safetensors").write_bytes((trained / "student.safetensors").read_bytes())
    (folder / "config.json").write_text(json.dumps(TINY_HF_CONFIG))
    code, again = _eval_json(capsys, trained, "--student", folder / "student.safetensors")
    assert code == 0 and again["metrics"]["student"]["kd_loss"] == student["kd_loss"], again["reasons"]
    evidence("heldout_kd_loss_trained", student["kd_loss"])
    evidence("heldout_kd_loss_initial", baseline["kd_loss"])
    code, report = _eval_json(capsys, trained, "--student", trained / "initial_student.gguf")
    assert code == 1 and report["verdict"] == "fail"
    assert any(r.startswith("no improvement") for r in report["reasons"]), report["reasons"]


# --- FT-EVAL-004: the held-out split ----------------------------------------------------------------


@pytest.mark.falsifies("FT-EVAL-004", mutants=["eval-reads-training-split", "holdout-trains-on-held-out",
                                               "holdout-not-seeded", "holdout-trains-on-repeats"],
                       covers=["distill.data:split_documents", "distill.data:disjoint_training", "distill.data:windows",
                               "distill.train:_hold_out",
                               "distill.evaluate:spread_rows", "distill.commands.eval"])
def test_training_and_evaluation_read_disjoint_documents(model_file: ModelFile, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    held_sets = {tuple(split_documents(WINDOWS, HOLDOUT, seed)[1]) for seed in range(4)}
    assert len(held_sets) > 1, "the held-out documents do not depend on the seed"
    assert split_documents(WINDOWS, HOLDOUT, 7) == split_documents(WINDOWS, HOLDOUT, 7)
    data = _token_file(tmp_path / "ids.npy", 2)
    repeated = np.load(data).reshape(WINDOWS, SEQ)
    repeated[-8:] = repeated[:8]  # 8 windows repeated: held out where one of a pair is, neither may be trained on
    np.save(data, repeated.reshape(-1))
    windows = {tuple(row) for row in repeated.tolist()}
    read: list[tuple[int, ...]] = []
    take = data_module.TokenStream.take

    def spy_take(self, count: int) -> torch.Tensor:
        rows = take(self, count)
        read.extend(tuple(row) for row in rows.tolist())
        return rows

    monkeypatch.setattr(data_module.TokenStream, "take", spy_take)
    _train(capsys, model_file("tiny-teacher"), model_file("tiny-student"), data, tmp_path / "run",
           "--steps", "30", "--holdout", str(HOLDOUT))
    monkeypatch.setattr(data_module.TokenStream, "take", take)
    trained = set(read)
    evaluated: list[tuple[int, ...]] = []
    run_eval = evaluate_module.evaluate

    def spy_evaluate(teacher, student, rows, *args, **kwargs):
        evaluated.extend(tuple(row) for row in rows.tolist())
        return run_eval(teacher, student, rows, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", spy_evaluate)
    code, report = _eval_json(capsys, tmp_path / "run")
    held = set(evaluated)
    assert held <= windows and len(evaluated) == 2 * HELD, f"{len(evaluated)} rows evaluated, {HELD} documents held out"
    assert not held & trained, f"{len(held & trained)} evaluated rows were trained on"
    assert trained == windows - held, f"training read {len(trained)} of the {len(windows - held)} other windows"
    assert report["rows"] == HELD, report
    # --max-rows 2 of the 4 held-out rows: the documented spread, row i * 4 // 2 of them in order, the same
    # rows for the student and its baseline (evaluate runs once for each)
    all_held, evaluated[:] = evaluated[:HELD], []
    code, report = _eval_json(capsys, tmp_path / "run", "--max-rows", "2")
    spread = [all_held[i * HELD // 2] for i in range(2)]
    assert evaluated == spread + spread and len(set(spread)) == 2, evaluated
    assert (report["rows"], report["rows_held_out"]) == (2, HELD), report


# --- FT-EVAL-005: broken checkpoints fail, each with its reason -------------------------------------------


def _broken_checkpoints(trained: Path, folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """case -> (student file, extra pv eval options): each a checkpoint a user could be handed."""
    state = load_file(trained / "student.safetensors")
    cases: dict[str, tuple[Path, list[str]]] = {}

    def write(name: str, tensors: dict[str, torch.Tensor]) -> Path:
        path = folder / f"{name}.safetensors"
        save_file(tensors, str(path))
        return path

    edited = dict(state, **{"blocks.0.mlp.up.weight": state["blocks.0.mlp.up.weight"].clone()})
    edited["blocks.0.mlp.up.weight"][3, 7] = math.nan
    cases["nan"] = (write("nan", edited), [])
    edited = dict(state, **{"blocks.1.attn.q.weight": state["blocks.1.attn.q.weight"].clone()})
    edited["blocks.1.attn.q.weight"][0, 0] = math.inf
    cases["inf"] = (write("inf", edited), [])
    cases["zero"] = (write("zero", {k: torch.zeros_like(v) for k, v in state.items()}), [])
    cases["constant"] = (write("constant", dict(state, **{"blocks.0.attn.o.weight":
                                                          torch.full_like(state["blocks.0.attn.o.weight"], 0.01)})), [])
    cases["shape"] = (write("shape", dict(state, **{"blocks.0.mlp.down.weight":
                                                    state["blocks.0.mlp.down.weight"][:, :-1].contiguous()})), [])
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes((trained / "student.safetensors").read_bytes()[:-4096])
    cases["truncated"] = (truncated, [])
    cut = folder / "truncated.gguf"
    cut.write_bytes((trained / "initial_student.gguf").read_bytes()[:-4096])
    cases["truncated-gguf"] = (cut, [])
    initial = read_gguf(trained / "initial_student.gguf")
    start = {k: v.detach() for k, v in build_model(initial.config, initial.tensors).state_dict().items()}
    cases["identical"] = (write("identical", start), [])
    noise = torch.Generator().manual_seed(9)
    cases["noisy-start"] = (write("noisy", {k: v + 1e-4 * torch.randn(v.shape, generator=noise)
                                            for k, v in start.items()}), [])
    cases["vocabulary"] = (make_model_file(folder / "rows.gguf", "tiny", "f32", None, 3, vocab_rows=1000), [])
    tokens = list(initial.tokenizer.tokens)
    tokens[7] = "renamed"
    config = initial.config
    write_gguf(folder / "tokens.gguf", config, synth_tensors(config, "f32", 4),
               dataclasses.replace(initial.tokenizer, tokens=tokens))
    cases["tokens"] = (folder / "tokens.gguf", [])
    hf = folder / "hf"
    hf.mkdir()
    (hf / "student.safetensors").write_bytes((trained / "student.safetensors").read_bytes())
    (hf / "config.json").write_text(json.dumps({**TINY_HF_CONFIG, "intermediate_size": 384}))
    cases["config.json"] = (hf / "student.safetensors", [])
    cases["overlap"] = (trained / "student.safetensors", ["--data", str(trained.parent / "ids.npy")])
    return cases


#: case -> a fragment of the reason pv eval must give
REASONS = {
    "nan": "'blocks.0.mlp.up.weight' has 1 NaN or Inf",
    "inf": "'blocks.1.attn.q.weight' has 1 NaN or Inf",
    "zero": "is constant (every entry 0)",
    "constant": "'blocks.0.attn.o.weight' is constant",
    "shape": "size mismatch for blocks.0.mlp.down.weight",
    "truncated": "does not read as safetensors",
    "truncated-gguf": "truncated.gguf: truncated: tensor",
    "identical": "exactly the weights of its baseline",
    "noisy-start": "no improvement",
    "vocabulary": "has 1000 vocabulary rows, its baseline",
    "tokens": "has other tokens than its baseline",
    "config.json": "size mismatch for blocks.0.mlp.gate.weight",
    "overlap": "overlaps the training data",
    "teacher-tokens": "vocabularies differ at token index 9: teacher 'renamed'",
}


@pytest.mark.falsifies("FT-EVAL-005", mutants=["eval-structural-pass", "eval-weights-unchecked",
                                               "eval-noop-unchecked", "eval-overlap-unchecked"],
                       covers=["distill.evaluate", "distill.students", "distill.commands.eval"])
def test_each_broken_checkpoint_fails_with_its_reason(model_file: ModelFile, trained: Path, tmp_path: Path,
                                                      capsys) -> None:
    cases = _broken_checkpoints(trained, tmp_path)
    # the run's student against a teacher whose tokens are not the student's: training would refuse the pair
    teacher = read_gguf(model_file("tiny-teacher"))
    tokens = list(teacher.tokenizer.tokens)
    tokens[9] = "renamed"
    write_gguf(tmp_path / "teacher-tokens.gguf", teacher.config, synth_tensors(teacher.config, "f32", 6),
               dataclasses.replace(teacher.tokenizer, tokens=tokens))
    cases["teacher-tokens"] = (trained / "student.safetensors", ["--teacher", str(tmp_path / "teacher-tokens.gguf")])
    outcomes = {}
    for case, (student, options) in cases.items():
        code, report = _eval_json(capsys, trained, "--student", student, *options)
        outcomes[case] = (code, report["reasons"])
    for case, fragment in REASONS.items():
        code, reasons = outcomes[case]
        assert code == 1 and any(fragment in r for r in reasons), f"{case}: exit {code}, reasons {reasons}"


# --- FT-EVAL-006: evaluation during training -------------------------------------------------------------


@pytest.mark.falsifies("FT-EVAL-006", mutants=["eval-improved-always"],
                       covers=["distill.train:_Run._evaluate", "distill.train:_Run._eval_summary",
                               "distill.evaluate:EvalMetrics"])
def test_eval_records_and_the_summary_say_whether_the_student_improved(model_file: ModelFile, tmp_path: Path,
                                                                        capsys) -> None:
    data = _token_file(tmp_path / "ids.npy", 6)
    for name, lr, improved in (("learns", "3e-3", True), ("still", "1e-9", False)):
        out = tmp_path / name
        code, printed, err = _pv(capsys, "distill", "--teacher", model_file("tiny-teacher"), "--student",
                                 model_file("tiny-student"), "--data", data, "--out", out, *TRAIN, "--lr", lr,
                                 "--steps", "10", "--eval-every", "4")
        assert code == 0, err
        assert printed.rstrip().endswith("NOT improved over the start" if not improved else ": improved over the start")
        records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        evals = [r for r in records if r["record"] == "eval"]
        assert [r["step"] for r in evals] == [0, 4, 8, 10], evals
        assert all(set(r) == {"record", "step", "kd_loss", "ce", "top1_agreement", "positions"} for r in evals)
        assert all(r["positions"] == HELD * SEQ for r in evals)
        summary = json.loads((out / "run.json").read_text())["eval"]
        assert summary["start"]["step"] == 0 and summary["final"]["step"] == 10
        assert summary["improved"] is improved, (name, summary)


# --- FT-EVAL-007: input errors ------------------------------------------------------------------------------


@pytest.mark.falsifies("FT-EVAL-007", mutants=["eval-config-json-not-qwen2-accepted", "eval-broken-baseline-accepted"],
                       covers=["distill.students", "distill.evaluate:evaluate_students", "distill.evaluate:evaluate"])
def test_input_errors_exit_2_naming_the_file(trained: Path, tmp_path: Path, capsys) -> None:
    state = load_file(trained / "student.safetensors")
    weights = tmp_path / "student.safetensors"
    weights.write_bytes((trained / "student.safetensors").read_bytes())
    broken = tmp_path / "baseline.safetensors"
    save_file(dict(state, **{"output_norm.weight": torch.full_like(state["output_norm.weight"], math.nan)}), str(broken))
    llama = {**TINY_HF_CONFIG, "model_type": "llama"}
    cases = [
        (["--student", tmp_path / "missing.safetensors"], "missing.safetensors: student not found"),
        (["--student", weights, "--config", tmp_path / "none.json"], "none.json: config of the student"),
        (["--student", weights, "--baseline", broken, "--config", trained / "initial_student.gguf"],
         "baseline.safetensors: tensor 'output_norm.weight' has 256 NaN or Inf"),
    ]
    for config, message in ((llama, "not a Qwen2 config"), ({"model_type": "qwen2"}, "config.json lacks vocab_size")):
        (tmp_path / "config.json").write_text(json.dumps(config))
        cases.append((["--student", weights], message))
        for argv, want in cases[-1:]:
            code, out, err = _pv(capsys, "eval", trained, *argv)
            assert code == 2 and want in err and out == "", (argv, code, err)
    (tmp_path / "config.json").unlink()
    for argv, want in cases[:3]:
        code, out, err = _pv(capsys, "eval", trained, *argv)
        assert code == 2 and want in err and out == "" and "Traceback" not in err, (argv, code, err)
    for shape in ((2, 1), (0, 4), (4,)):
        with pytest.raises(DistillError, match="at least one row of at least 2 token ids"):
            evaluate(None, _Table(torch.zeros(3, 3)), torch.zeros(shape, dtype=torch.long), 1.0)
    two = evaluate(_Teacher(torch.eye(3)), _Table(torch.eye(3)), torch.zeros((1, 2), dtype=torch.long), 1.0)
    assert (two.positions, two.ce_positions) == (2, 1)
    with pytest.raises(DistillError, match="cannot be compared"):
        evaluate_module.overlapping_rows(torch.zeros((2, 4)), torch.zeros((2, 5)))
    with pytest.raises(DistillError, match=r"margin must be a number in \[0, 1\)"):
        evaluate_module.evaluate_students(trained / "initial_student.gguf", weights, trained / "initial_student.gguf",
                                          torch.zeros((1, 4), dtype=torch.long), margin=1.5)


@pytest.mark.falsifies("FT-EVAL-007", mutants=["eval-alignment-skipped-without-tokens"],
                       covers=["distill.students", "distill.evaluate:_check_vocabulary",
                               "distill.evaluate:evaluate_students"])
def test_a_config_json_that_does_not_read_and_a_pair_without_tokens_exit_2(model_file: ModelFile, trained: Path,
                                                                           tmp_path: Path, capsys) -> None:
    """Without a GGUF file on either side there are no tokens to align with the teacher: an input error."""
    for name in ("student", "baseline"):
        (tmp_path / f"{name}.safetensors").write_bytes((trained / "student.safetensors").read_bytes())
    ids = _token_file(tmp_path / "ids.npy", 8, windows=4)
    pair = ["eval", "--teacher", model_file("tiny-teacher"), "--student", tmp_path / "student.safetensors",
            "--baseline", tmp_path / "baseline.safetensors", "--data", ids, "--seq", str(SEQ)]
    for config, want in (("{not json", "config.json: not a readable config.json"),
                         (json.dumps({**TINY_HF_CONFIG, "num_attention_heads": 3}),
                          "config.json: hidden_size 256 must split into 3 heads"),
                         (json.dumps(TINY_HF_CONFIG), "the vocabulary alignment cannot be checked")):
        (tmp_path / "config.json").write_text(config)
        code, out, err = _pv(capsys, *pair)
        assert code == 2 and want in err and out == "" and "Traceback" not in err, (config, code, err)

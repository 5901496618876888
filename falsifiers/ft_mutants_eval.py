"""Planted defects of the evaluation (distill.evaluate, distill.students, ``pv eval``) and of the held-out
split of training (distill.data, distill.train), registered with ``ft_mutants.mutant``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from ft_mutants import mutant, replace


def _sums(mp: pytest.MonkeyPatch, body: Callable[..., Any]) -> None:
    """Replace ``distill.evaluate.batch_sums`` by ``body(original, s, t, ids, temperature)``."""
    replace(mp, "distill.evaluate:batch_sums", lambda original: lambda s, t, ids, temperature:
            body(original, s, t, ids, temperature))


@mutant("eval-ce-not-shifted", "the cross-entropy scores each position's own token instead of the next one")
def _ce_not_shifted(mp: pytest.MonkeyPatch) -> None:
    _sums(mp, lambda original, s, t, ids, T: original(s, t, torch.cat([ids[:, :1], ids[:, :-1]], dim=1), T))


@mutant("eval-kd-at-temperature-1", "the held-out KD loss ignores the run's temperature")
def _kd_at_temperature_1(mp: pytest.MonkeyPatch) -> None:
    _sums(mp, lambda original, s, t, ids, T: original(s, t, ids, 1.0))


@mutant("eval-skips-nan-positions", "positions whose student logits are NaN or Inf are left out of the metrics")
def _skips_nan_positions(mp: pytest.MonkeyPatch) -> None:
    def body(original: Callable[..., Any], s: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, T: float) -> Any:
        bad = ~torch.isfinite(s).all(dim=-1, keepdim=True)
        return original(torch.where(bad, t.to(s.dtype), s), t, ids, T)  # a skipped position adds nothing

    _sums(mp, body)


@mutant("eval-baseline-is-trained", "the student is compared against the trained student, not the initial one")
def _baseline_is_trained(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def evaluate_students(teacher: Any, student: Any, baseline: Any, rows: Any, **kwargs: Any) -> Any:
            config = kwargs.pop("config_source", None)
            return original(teacher, student, student, rows, config_source=config or baseline, **kwargs)

        return evaluate_students

    replace(mp, "distill.evaluate:evaluate_students", build)


@mutant("eval-structural-pass", "a checkpoint that loads with finite, non-constant weights passes without beating "
                                "its baseline (a structural check)")
def _structural_pass(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def evaluate_students(*args: Any, **kwargs: Any) -> Any:
            report = original(*args, **kwargs)
            report.reasons = [r for r in report.reasons if not r.startswith("no improvement")]
            return report

        return evaluate_students

    replace(mp, "distill.evaluate:evaluate_students", build)


@mutant("eval-reads-training-split", "pv eval RUN_DIR evaluates on documents of the training split")
def _reads_training_split(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def _run_inputs(args: Any) -> dict[str, Any]:
            inputs = original(args)
            held = inputs["rows"].shape[0]
            return {**inputs, "rows": inputs["trained_rows"][:held], "trained_rows": None}

        return _run_inputs

    replace(mp, "distill.commands.eval:_run_inputs", build)


@mutant("eval-overlap-unchecked", "held-out rows equal to training rows are not counted")
def _overlap_unchecked(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.evaluate:overlapping_rows", lambda original: lambda held_out, trained: 0)


@mutant("eval-weights-unchecked", "NaN, Inf and constant weights of a checkpoint are not looked for")
def _weights_unchecked(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.students:weight_problems", lambda original: lambda model: [])


@mutant("eval-noop-unchecked", "a student with exactly its baseline's weights is not recognised as a no-op run")
def _noop_unchecked(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.students:same_weights", lambda original: lambda a, b: False)


@mutant("holdout-trains-on-held-out", "training reads every document, the held-out ones too")
def _trains_on_held_out(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def _hold_out(config: Any, ids: Any) -> Any:
            return ids, original(config, ids)[1]

        return _hold_out

    replace(mp, "distill.train:_hold_out", build)


@mutant("holdout-not-seeded", "the held-out documents are the last ones, whatever the seed")
def _holdout_not_seeded(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def split_documents(n_documents: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
            train, held = original(n_documents, fraction, seed)
            return list(range(len(train))), list(range(len(train), n_documents))

        return split_documents

    replace(mp, "distill.data:split_documents", build)


@mutant("eval-improved-always", "run.json says the student improved whatever the evaluations measured")
def _improved_always(mp: pytest.MonkeyPatch) -> None:
    import importlib

    train = importlib.import_module("distill.train")
    original = train._Run._eval_summary

    def _eval_summary(self: Any) -> Any:
        summary = original(self)
        return None if summary is None else {**summary, "improved": True}

    mp.setattr(train._Run, "_eval_summary", _eval_summary)


@mutant("eval-config-json-not-qwen2-accepted", "a config.json of another model type is read as a Qwen2 config")
def _config_json_any_model(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def hf_config(path: Any) -> Any:
            import json
            import tempfile
            from pathlib import Path

            data = json.loads(Path(path).read_text(encoding="utf-8"))
            with tempfile.TemporaryDirectory() as folder:
                patched = Path(folder) / "config.json"
                patched.write_text(json.dumps({**data, "model_type": "qwen2"}), encoding="utf-8")
                return original(patched)

        return hf_config

    replace(mp, "distill.students:hf_config", build)


@mutant("eval-broken-baseline-accepted", "a baseline with NaN, Inf or constant weights is used as it is")
def _broken_baseline_accepted(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def weight_problems(model: Any) -> list[str]:
            import inspect

            caller = inspect.stack()[1]
            return [] if "baseline" in caller.frame.f_locals and caller.function == "evaluate_students" \
                and model is caller.frame.f_locals["baseline"].model else original(model)

        return weight_problems

    replace(mp, "distill.students:weight_problems", build)


@mutant("eval-alignment-skipped-without-tokens", "a pair with no tokens on either side is evaluated without the "
        "vocabulary check training makes")
def _alignment_skipped_without_tokens(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def check_vocabulary(teacher_path: Any, student: Any, baseline: Any) -> None:
            if student.tokenizer is None and baseline.tokenizer is None:
                return None
            return original(teacher_path, student, baseline)

        return check_vocabulary

    replace(mp, "distill.evaluate:_check_vocabulary", build)


@mutant("holdout-trains-on-repeats", "a window whose ids repeat a held-out window's is still trained on")
def _holdout_trains_on_repeats(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.data:disjoint_training", lambda original: lambda rows, held: [
        index for index in range(rows.shape[0]) if index not in set(held)])


# --- the command's two forms and its text report ---------------------------------------------------------


@mutant("eval-pair-temperature-ignored", "pv eval --teacher ... evaluates at T = 1 whatever --temperature says")
def _eval_pair_temperature_ignored(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda args: {**original(args), "temperature": 1.0}

    replace(mp, "distill.commands.eval:_pair_inputs", build)


@mutant("eval-text-swaps-sides", "the text report prints the baseline's metrics as the student's and back")
def _eval_text_swaps_sides(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def text(result: dict[str, Any]) -> str:
            metrics = result["metrics"]
            return original({**result, "metrics": {"student": metrics["baseline"], "baseline": metrics["student"]}})

        return text

    replace(mp, "distill.commands.eval:_text", build)


@mutant("eval-nan-temperature-accepted", "pv eval takes --temperature nan as no temperature given")
def _eval_nan_temperature_accepted(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(args: Any) -> int:
            if args.temperature is not None and args.temperature != args.temperature:
                args.temperature = None
            return original(args)

        return run

    replace(mp, "distill.commands.eval:run", build)

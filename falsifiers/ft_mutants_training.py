"""Planted defects of data-parallel training, checkpoints and resume (distill.parallel, distill.train,
distill.checkpoints), registered with ``ft_mutants.mutant``.

The falsifiers run their ranks and killed processes as forks of the test
process (``distill.parallel.start_ranks``), so a mutant applied here is the
code every rank runs.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch

from ft_mutants import mutant, replace

# --- distill.parallel and the step ----------------------------------------------------------------


@mutant("dp-gradients-not-averaged", "the student is not DDP-wrapped: each rank steps on its own gradients")
def _dp_not_averaged(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.parallel:wrap_student", lambda original: lambda student, world, device: student)


@mutant("dp-gradients-summed", "DDP sums the ranks' gradients instead of averaging them")
def _dp_summed(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        def wrap_student(student: torch.nn.Module, world: Any, device: torch.device) -> torch.nn.Module:
            import torch.distributed as dist

            wrapped = original(student, world, device)
            if world.distributed:
                def summed(state: Any, bucket: Any) -> Any:
                    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
                    return future.then(lambda done: done.value()[0])

                wrapped.register_comm_hook(None, summed)
            return wrapped

        return wrap_student

    replace(mp, "distill.parallel:wrap_student", build)


@mutant("dp-same-shard", "every rank reads rank 0's rows of the step")
def _dp_same_shard(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    mp.setattr(train.StepPlan, "shard", lambda self, rows: rows[: self.batch * self.grad_accum])


@mutant("dp-loss-of-rank-0", "the logged loss (and the divergence check) is rank 0's own, not the mean over ranks")
def _dp_loss_of_rank_0(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.parallel:mean_over_ranks", lambda original: lambda value, world: value)


@mutant("accum-loss-not-divided", "each micro-batch's loss is back-propagated without the 1/K of the mean")
def _accum_not_divided(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    mp.setattr(train.StepPlan, "micro_weight", property(lambda self: 1.0))


# --- distill.checkpoints and the resume --------------------------------------------------------------


def _loaded_checkpoint(monkeypatch: pytest.MonkeyPatch, edit: Callable[[Any], Any]) -> None:
    """``load_checkpoint`` hands the run ``edit(checkpoint)``: the restore ignores part of what was saved."""
    replace(monkeypatch, "distill.checkpoints:load_checkpoint", lambda original: lambda path: edit(original(path)))


@mutant("resume-optimizer-not-restored", "a resumed run starts with fresh AdamW moments")
def _optimizer_not_restored(mp: pytest.MonkeyPatch) -> None:
    _loaded_checkpoint(mp, lambda c: dataclasses.replace(
        c, optimizer={"state": {}, "param_groups": c.optimizer["param_groups"]}))


@mutant("resume-rng-not-restored", "a resumed run's data generator starts again from the seed")
def _rng_not_restored(mp: pytest.MonkeyPatch) -> None:
    def edit(c: Any) -> Any:
        fresh = torch.Generator().manual_seed(int(c.record["config"]["seed"])).get_state()
        return dataclasses.replace(c, data={**c.data, "generator": fresh})

    _loaded_checkpoint(mp, edit)


@mutant("resume-data-position-restarted", "a resumed run reads its data from position 0 again")
def _position_restarted(mp: pytest.MonkeyPatch) -> None:
    _loaded_checkpoint(mp, lambda c: dataclasses.replace(c, data={**c.data, "position": 0}))


@mutant("resume-log-not-trimmed", "a resumed run keeps the log records of the steps after its checkpoint")
def _log_not_trimmed(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")

    def build(original: Callable[[Any], list[dict[str, Any]]]) -> Callable[[Any], list[dict[str, Any]]]:
        def _earlier(self: Any) -> list[dict[str, Any]]:
            start, self.start = self.start, 1 << 62
            try:
                return original(self)
            finally:
                self.start = start

        return _earlier

    mp.setattr(train._Run, "_earlier", build(train._Run._earlier))


@mutant("checkpoint-summary-not-updated", "run.json is written only at the start and the end, not at checkpoints")
def _summary_not_updated(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    original = train._Run._checkpoint

    def _checkpoint(self: Any, *args: Any) -> None:
        write, self._write_summary = self._write_summary, lambda *a: {}
        try:
            original(self, *args)
        finally:
            self._write_summary = write

    mp.setattr(train._Run, "_checkpoint", _checkpoint)


@mutant("checkpoint-keep-ignored", "every checkpoint is kept whatever --keep says")
def _keep_ignored(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.checkpoints:save_checkpoint",
            lambda original: lambda out_dir, record, student, optimizer, rng, data, keep:
            original(out_dir, record, student, optimizer, rng, data, 1 << 30))


@mutant("resume-identity-unchecked", "a resume accepts a changed teacher, student or option")
def _identity_unchecked(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    mp.setattr(train, "_refuse_changes", lambda out_dir, saved, now: None)


# --- signals ---------------------------------------------------------------------------------------


@mutant("signals-sigterm-sighup-unhandled", "SIGTERM and SIGHUP keep their default action (the process dies)")
def _signals_unhandled(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    mp.setattr(train, "STOP_SIGNALS", ())


@mutant("stop-without-final-checkpoint", "a signal ends the run without a checkpoint of the steps done")
def _no_final_checkpoint(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    mp.setattr(train._Run, "_final_checkpoint", lambda self, *args: "")


@mutant("stop-data-not-rewound", "the final checkpoint records the data stream after the rows of the stopped step")
def _data_not_rewound(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")
    original = train._Run._final_checkpoint
    mp.setattr(train._Run, "_final_checkpoint",
               lambda self, student, optimizer, stream, resume_point: original(
                   self, student, optimizer, stream, stream.state_dict()))


# --- what a resume compares and the documented defaults ------------------------------------------------


def _sampled_fingerprint(head: int, samples: int, size: int) -> Callable[..., Any]:
    """A fingerprint of a file's size, its first ``head`` bytes and ``samples`` evenly spaced blocks of ``size``."""
    import hashlib
    from pathlib import Path

    def file_fingerprint(path: Path, what: str = "") -> str:
        digest = hashlib.sha256()
        total = Path(path).stat().st_size
        with open(path, "rb") as fh:
            digest.update(fh.read(head))
            for i in range(samples):
                fh.seek(total * i // samples)
                digest.update(fh.read(size))
        return f"{total}:{digest.hexdigest()}"

    return file_fingerprint


@mutant("fingerprint-sampled", "the fingerprint reads the first MiB and 32 samples of 64 KiB, not every byte")
def _fingerprint_sampled(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.checkpoints:file_fingerprint", lambda original: _sampled_fingerprint(1 << 20, 32, 1 << 16))


@mutant("fingerprint-skips-first-mib", "the fingerprint ignores the first MiB of a file")
def _fingerprint_skips_head(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.checkpoints:file_fingerprint", lambda original: _sampled_fingerprint(0, 32, 1 << 16))


def _default(mp: pytest.MonkeyPatch, name: str, value: Any) -> None:
    command = importlib.import_module("distill.commands.distill")
    mp.setitem(command.DEFAULTS, name, value)


@mutant("default-keep-changed", "pv distill keeps 4 checkpoints by default, not the documented 3")
def _default_keep(mp: pytest.MonkeyPatch) -> None:
    _default(mp, "keep", 4)


@mutant("default-batch-changed", "pv distill reads batches of 3 rows by default, not the documented 2")
def _default_batch(mp: pytest.MonkeyPatch) -> None:
    _default(mp, "batch", 3)


@mutant("checkpoint-hash-unchecked", "a resume reads checkpoint files without checking their recorded sha256")
def _hash_unchecked(mp: pytest.MonkeyPatch) -> None:
    checkpoints = importlib.import_module("distill.checkpoints")
    mp.setattr(checkpoints, "_read_state_file", lambda path, name, record: checkpoints.read_input(
        path / name, "a checkpoint file", checkpoints.MAX_READ_BYTES))


@mutant("stream-epoch-order-repeated", "every epoch of the data stream reads the windows in the first epoch's order")
def _stream_epoch_order_repeated(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def window_order(self: Any) -> Any:
            if getattr(self, "_first_order", None) is None:
                self._first_order = original(self)
            self._order = self._first_order
            return self._order

        return window_order

    replace(mp, "distill.data:TokenStream._window_order", build)


@mutant("stream-state-at-position-zero", "a stream's saved state forgets its position")
def _stream_state_at_position_zero(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.data:TokenStream.state_dict",
            lambda original: lambda self: {**original(self), "position": 0})


# --- the learning-rate schedule ----------------------------------------------------------------------


@mutant("lr-warmup-from-zero", "warm-up starts at rate 0 (step t gets lr * t / warmup): the first step learns nothing")
def _lr_warmup_from_zero(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., float]) -> Callable[..., float]:
        def learning_rate(step: int, lr: float, schedule: str, warmup: int, total: int) -> float:
            return lr * step / warmup if step < warmup else original(step, lr, schedule, warmup, total)

        return learning_rate

    replace(mp, "distill.schedule:learning_rate", build)


@mutant("lr-cosine-ignores-warmup", "the cosine decay counts from step 0, not from the end of warm-up")
def _lr_cosine_ignores_warmup(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., float]) -> Callable[..., float]:
        def learning_rate(step: int, lr: float, schedule: str, warmup: int, total: int) -> float:
            return original(step, lr, schedule, 0 if step >= warmup else warmup, total)

        return learning_rate

    replace(mp, "distill.schedule:learning_rate", build)


@mutant("lr-unknown-schedule-as-constant", "a schedule name other than constant and cosine runs as constant")
def _lr_unknown_schedule_as_constant(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., float]) -> Callable[..., float]:
        def learning_rate(step: int, lr: float, schedule: str, warmup: int, total: int) -> float:
            return original(step, lr, schedule if schedule == "cosine" else "constant", warmup, total)

        return learning_rate

    replace(mp, "distill.schedule:learning_rate", build)


# --- the limits of a run's options ----------------------------------------------------------------------


@mutant("config-counts-unbounded", "counts above 2**31 - 1 are accepted (steps, batch, seq, ...)")
def _config_counts_unbounded(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("distill.train"), "MAX_COUNT", 2**63 - 1)


@mutant("config-lr-unbounded", "a learning rate past the largest float32 is accepted")
def _config_lr_unbounded(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("distill.train"), "MAX_LR", float("inf"))


@mutant("config-models-not-paired", "a teacher without a student (or with a preset too) is accepted")
def _config_models_not_paired(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def check_config(config: Any) -> Any:
            return original(dataclasses.replace(config, teacher=config.teacher or config.student, preset_pair=None,
                                                student=config.student or config.teacher)
                            if config.teacher or config.student else config)

        return check_config

    replace(mp, "distill.train:check_config", build)


@mutant("config-any-device", "any device name torch parses is accepted, whether or not it is there")
def _config_any_device(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def check_config(config: Any) -> Any:
            try:
                device = torch.device(config.device)
            except RuntimeError:
                device = torch.device("cpu")
            original(dataclasses.replace(config, device="cpu"))
            return device

        return check_config

    replace(mp, "distill.train:check_config", build)


# --- the documented run ---------------------------------------------------------------------------------


@mutant("default-temperature-changed", "pv distill's default temperature is 2, not the documented 1.0")
def _default_temperature_changed(mp: pytest.MonkeyPatch) -> None:
    mp.setitem(importlib.import_module("distill.commands.distill").DEFAULTS, "temperature", 2.0)


@mutant("final-checkpoint-skipped", "a run checkpoints only at multiples of --checkpoint-every, not at its end")
def _final_checkpoint_skipped(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def _checkpoint(self: Any, step: int, *args: Any, **kwargs: Any) -> Any:
            return None if step % self.config.checkpoint_every else original(self, step, *args, **kwargs)

        return _checkpoint

    replace(mp, "distill.train:_Run._checkpoint", build)


# --- gradient clipping -----------------------------------------------------------------------------------


@mutant("clip-ignored", "the gradients are measured but never clipped")
def _clip_ignored(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, optimizer: Any, args: Any, kwargs: Any) -> None:
            self.signals.hold()
            self.norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, float("inf")))

        return call

    replace(mp, "distill.train:_ClipGradients.__call__", build)


@mutant("clip-norm-logged-after-clipping", "a step logs the gradients' norm after clipping, not before")
def _clip_norm_after(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, optimizer: Any, args: Any, kwargs: Any) -> None:
            original(self, optimizer, args, kwargs)
            self.norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, float("inf")))

        return call

    replace(mp, "distill.train:_ClipGradients.__call__", build)


# --- the evaluation schedule ------------------------------------------------------------------------------


@mutant("eval-initial-skipped", "a run evaluates its student only after steps, not before the first")
def _eval_initial_skipped(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def evaluate(self: Any, step: int, *args: Any) -> None:
            if step != self.start:
                original(self, step, *args)

        return evaluate

    replace(mp, "distill.train:_Run._evaluate", build)


@mutant("eval-final-skipped", "a run evaluates every E steps but not after a last step between them")
def _eval_final_skipped(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def evaluate(self: Any, step: int, *args: Any) -> None:
            if step % self.config.eval_every == 0:
                original(self, step, *args)

        return evaluate

    replace(mp, "distill.train:_Run._evaluate", build)

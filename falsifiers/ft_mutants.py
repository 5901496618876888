"""Planted defects ("mutants") of the code under test, one named monkeypatch each.

A falsifier names the mutants it must detect: ``@pytest.mark.falsifies("FT-...",
mutants=[...])``. Under ``--pv-vacuity`` each mutant is applied (and undone)
around one extra run of the falsifier, which must then fail. A mutant replaces
a function or method of ``distill`` with a subtly wrong version; ``replace``
also rebinds every copy of the original imported into other modules (and in
their dispatch tables), so the defect is seen wherever the code under test
calls it. A mutant that no longer fits the code (a function renamed, say)
fails while being applied: its runs are errors, never kills.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from pv.plugins.falsifiers import Mutant, MutantRegistry

#: the mutants of ``distill``; ``replace`` also rebinds copies in distill, pv and the falsifier modules
REGISTRY = MutantRegistry(packages=("distill", "pv"), falsifier_prefix="test_ft_")
MUTANTS: dict[str, Mutant] = REGISTRY.mutants
mutant = REGISTRY.mutant
replace = REGISTRY.replace


def apply(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply mutant ``name``; ``monkeypatch`` undoes it."""
    MUTANTS[name].patch(monkeypatch)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` (a backward-only defect)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def _valid_count(logits: torch.Tensor, mask: torch.Tensor | None) -> int:
    return int(logits[..., 0].numel() if mask is None else mask.sum())


def _kd_wrapper(monkeypatch: pytest.MonkeyPatch, body: Callable[..., torch.Tensor]) -> None:
    """Replace ``distill.kd.kd_loss`` by ``body(original, s, t, temperature, mask, **kw)``."""

    def build(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                    mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
            return body(original, student_logits, teacher_logits, temperature, mask, **kwargs)

        return kd_loss

    replace(monkeypatch, "distill.kd:kd_loss", build)


# --- distill.kd ---------------------------------------------------------------------------


@mutant("kd-no-t-squared", "the KD loss lacks its T^2 factor")
def _kd_no_t_squared(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, mask, **kw) / T**2)


@mutant("kd-no-temperature", "the softmaxes ignore the temperature (T^2 still applied)")
def _kd_no_temperature(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s * T, t * T, T, mask, **kw))


@mutant("kd-reverse-kl", "the KL divergence is taken in the reverse direction, KL(student || teacher)")
def _kd_reverse_kl(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(t, s, T, mask, **kw))


@mutant("kd-grad-no-1-over-n", "the gradient lacks the 1/n of the mean (the value is right)")
def _kd_grad_no_mean(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw:
                kd(_ScaleGrad.apply(s, _valid_count(s, mask)), t, T, mask, **kw))


@mutant("kd-grad-t-squared", "the gradient is scaled by T^2 instead of T (the value is right)")
def _kd_grad_t_squared(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(_ScaleGrad.apply(s, T), t, T, mask, **kw))


@mutant("kd-mask-ignored", "the mask is dropped: every position counts")
def _kd_mask_ignored(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, None, **kw))


@mutant("kd-mask-ignored-in-n", "masked positions are left out of the sum but counted in n")
def _kd_mask_in_n(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw:
                kd(s, t, T, mask, **kw) * _valid_count(s, mask) / _valid_count(s, None))


@mutant("kd-silent-vocab-slice", "logits of different widths are cut to the smaller width silently")
def _kd_silent_slice(mp: pytest.MonkeyPatch) -> None:
    def body(kd: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, T: float,
             mask: torch.Tensor | None, **kw: Any) -> torch.Tensor:
        width = min(s.shape[-1], t.shape[-1])
        return kd(s[..., :width], t[..., :width], T, mask, **kw)

    _kd_wrapper(mp, body)


def _plain_kd(s: torch.Tensor, t: torch.Tensor, T: float, mask: torch.Tensor | None, dtype: torch.dtype,
              guard: bool) -> torch.Tensor:
    """T^2/n sum KL(softmax(t/T) || softmax(s/T)) computed in ``dtype``, with or without 0 log 0 = 0."""
    log_q = torch.log_softmax(s.to(dtype) / T, dim=-1)
    log_p = torch.log_softmax(t.detach().to(dtype) / T, dim=-1)
    p = log_p.exp()
    terms = p * (log_p - log_q)
    if guard:
        terms = torch.where(p > 0, terms, torch.zeros((), dtype=dtype))
    rows = terms.sum(dim=-1)
    return (T * T * (rows.mean() if mask is None else rows[mask].mean())).float()


@mutant("kd-bf16-accumulation", "the softmaxes and the KL sum run in the logits' dtype (bf16), not float32")
def _kd_bf16(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: _plain_kd(s, t, T, mask, s.dtype, guard=True))


@mutant("kd-no-zero-p-guard", "0 * log 0 is not taken as 0: tokens the teacher rules out (-inf) give NaN")
def _kd_no_guard(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: _plain_kd(s, t, T, mask, torch.float32, guard=False))


@mutant("kd-unshifted-scaling", "logits are divided by T before the row maximum is taken out: x / T overflows for T < 1")
def _kd_unshifted(mp: pytest.MonkeyPatch) -> None:
    def scaled(flat: torch.Tensor, selector: Any, temperature: float) -> torch.Tensor:
        picked = flat[selector] if isinstance(selector, slice) else flat.index_select(0, selector)
        return picked.to(torch.float32, copy=True).div_(temperature)

    import distill.kd

    mp.setattr(distill.kd, "_scaled", scaled)


@mutant("kd-unchunked", "the KD loss materialises the float32 softmaxes of all positions at once")
def _kd_unchunked(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, mask, **{**kw, "max_chunk_elems": 1 << 62}))


# --- distill.dispatch ---------------------------------------------------------------------


def _decide_wrapper(monkeypatch: pytest.MonkeyPatch, body: Callable[..., Any]) -> None:
    """Replace ``distill.dispatch.decide_teacher_backend`` by ``body(original, *args)``."""

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def decide_teacher_backend(override: str | None, device_class: str, teacher_quantized: bool,
                                   dequant_bytes: int, free_bytes: int, native_bytes: int | None = None) -> Any:
            def decide(o: str | None, c: str, q: bool, d: int, f: int, n: int | None = native_bytes) -> Any:
                return original(o, c, q, d, f, n)

            return body(decide, override, device_class, teacher_quantized, dequant_bytes, free_bytes)

        return decide_teacher_backend

    replace(monkeypatch, "distill.dispatch:decide_teacher_backend", build)


def _reserve() -> int:
    return importlib.import_module("distill.dispatch").DEQUANT_RESERVE_BYTES


@mutant("backend-override-ignored", "an explicit override is replaced by auto")
def _override_ignored(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f:
                    decide(o if o not in ("dequant", "q4k-native") else "auto", c, q, d, f))


@mutant("backend-auto-after-override", "auto's memory rule runs after the override and overrules it")
def _auto_after_override(mp: pytest.MonkeyPatch) -> None:
    def body(decide: Callable[..., Any], o: str | None, c: str, q: bool, d: int, f: int) -> Any:
        chosen = decide(o, c, q, d, f)
        return decide("auto", c, q, d, f) if c == "discrete" else chosen

    _decide_wrapper(mp, body)


@mutant("backend-invalid-falls-back-to-auto", "an unknown override silently means auto")
def _invalid_to_auto(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f:
                    decide(o if o in (None, "", "auto", "dequant", "q4k-native") else "auto", c, q, d, f))


@mutant("backend-lenient-override", "overrides are trimmed and lower-cased before the check")
def _lenient_override(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f:
                    decide(o.strip().lower() if isinstance(o, str) else o, c, q, d, f))


@mutant("backend-native-unquantized-allowed", "q4k-native is accepted for a teacher without quantized weights")
def _native_unquantized(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide(o, c, q or o == "q4k-native", d, f))


@mutant("backend-reserve-ignored", "auto compares the dequantized size with all free memory, no reserve")
def _reserve_ignored(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide(o, c, q, d, f + _reserve()))


@mutant("backend-unified-means-dequant", "auto picks dequant on every unified-memory device, whether it fits or not")
def _unified_means_dequant(mp: pytest.MonkeyPatch) -> None:
    dispatch = importlib.import_module("distill.dispatch")

    def body(decide: Callable[..., Any], o: str | None, c: str, q: bool, d: int, f: int) -> Any:
        if o in (None, "", "auto") and c == "unified":
            return dispatch.BackendDecision("dequant", "auto: device has unified memory")
        return decide(o, c, q, d, f)

    _decide_wrapper(mp, body)


@mutant("backend-no-refusal", "auto falls back to q4k-native (or dequant) even when neither fits: no refusal before load")
def _no_refusal(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide(o, c, q, d, f, None) if q else decide(o, c, q, d, 1 << 62))



@mutant("backend-unquantized-by-memory", "auto decides an unquantized teacher by memory like a quantized one")
def _unquantized_by_memory(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide(o, c, q or o in (None, "", "auto"), d, f))


@mutant("device-class-inverted", "classify_device swaps unified and discrete")
def _device_inverted(mp: pytest.MonkeyPatch) -> None:
    swap = {"unified": "discrete", "discrete": "unified"}
    replace(mp, "distill.dispatch:classify_device", lambda original: lambda index: swap[original(index)])


@mutant("device-class-from-name", "classify_device guesses from the device name instead of is_integrated")
def _device_from_name(mp: pytest.MonkeyPatch) -> None:
    def classify_device(index: Any) -> str:
        name = torch.cuda.get_device_properties(index if isinstance(index, int) else 0).name
        return "unified" if any(part in name for part in ("GB10", "Thor", "Orin")) else "discrete"

    replace(mp, "distill.dispatch:classify_device", lambda original: classify_device)


# --- distill.vocab and pv vocab-check ---------------------------------------------------------


@mutant("vocab-prefix-sizes-only", "the token-prefix comparison looks at the list sizes only")
def _prefix_sizes_only(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def compare_tokenizers(teacher: Any, student: Any, **kwargs: Any) -> Any:
            found = original(teacher, student, **kwargs)
            fits = found.student_len <= found.teacher_len
            return dataclasses.replace(found, first_diff=None if fits else found.teacher_len,
                                       teacher_token=None, student_token=None)

        return compare_tokenizers

    replace(mp, "distill.vocab:compare_tokenizers", build)


@mutant("vocab-prefix-check-skipped", "require_shared_prefix accepts every pair")
def _prefix_check_skipped(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.vocab:require_shared_prefix", lambda original: lambda comparison: None)


@mutant("vocab-target-clamped", "a target larger than the teacher is silently clamped to the native size")
def _target_clamped(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.vocab:effective_vocab",
            lambda original: lambda native, target: original(native, None if target is None else min(target, native)))


@mutant("vocab-larger-student-accepted", "the prefix check compares only the rows both have")
def _larger_student(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def require_shared_prefix(c: Any) -> None:
            if c.first_diff is None or c.first_diff < min(c.teacher_len, c.student_len):
                original(c)

        return require_shared_prefix

    replace(mp, "distill.vocab:require_shared_prefix", build)

@mutant("vocab-check-exit-by-size", "pv vocab-check exits 0 whenever the student is not larger than the teacher")
def _vocab_check_exit_by_size(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., int]) -> Callable[..., int]:
        def run(args: Any) -> int:
            code = original(args)
            found = importlib.import_module("distill.vocab").compare_vocabs(args.teacher, args.student)
            return 0 if found.student_len <= found.teacher_len else code

        return run

    replace(mp, "distill.commands.vocab_check:run", build)


# --- distill.quant ------------------------------------------------------------------------


def _blocks_mutant(monkeypatch: pytest.MonkeyPatch, kernel: str, edit: Callable[[torch.Tensor], None]) -> None:
    """Run the dequantization kernel ``distill.quant:<kernel>`` on blocks changed in place by ``edit``."""

    def build(original: Callable[[torch.Tensor, torch.Tensor], None]) -> Callable[[torch.Tensor, torch.Tensor], None]:
        def mutated(blocks: torch.Tensor, out: torch.Tensor) -> None:
            changed = blocks.clone()
            edit(changed)
            original(changed, out)

        return mutated

    replace(monkeypatch, f"distill.quant:{kernel}", build)


@mutant("q4k-scale-high-bits-dropped", "Q4_K sub-blocks 4-7 lose the top 2 bits of their 6-bit scales and mins")
def _q4k_scale_bits(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> Callable[..., Any]:
        def unpack(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            sc, mn = (part.clone() for part in original(packed))
            sc[:, 4:] &= 0x0F
            mn[:, 4:] &= 0x0F
            return sc, mn

        return unpack

    replace(mp, "distill.quant:_q4_k_scales_mins", build)


@mutant("q6k-high-bits-dropped", "Q6_K ignores the 2 high bits of each quant (qh)")
def _q6k_high_bits(mp: pytest.MonkeyPatch) -> None:
    _blocks_mutant(mp, "_dequant_q6_k", lambda blocks: blocks[:, 128:192].zero_())


def _nibbles_swapped(raw: torch.Tensor) -> torch.Tensor:
    """Q4_K blocks with the two nibbles of every quant byte exchanged."""
    blocks = raw.reshape(-1, 144).clone()
    qs = blocks[:, 16:]
    qs.copy_((qs >> 4) | (qs << 4))
    return blocks.reshape(raw.shape)


def _mins_dropped(raw: torch.Tensor) -> torch.Tensor:
    """Q4_K blocks with their fp16 dmin set to zero."""
    blocks = raw.reshape(-1, 144).clone()
    blocks[:, 2:4] = 0
    return blocks.reshape(raw.shape)


@mutant("q4k-nibble-order-swapped", "Q4_K takes the high nibble for the first 32 weights of each 64")
def _q4k_nibbles(mp: pytest.MonkeyPatch) -> None:
    _blocks_mutant(mp, "_dequant_q4_k", lambda blocks: blocks.copy_(_nibbles_swapped(blocks)))


# --- distill.model (the q4k-native backend's layers) and distill.teacher ---------------------


def _quant_linear_raw(monkeypatch: pytest.MonkeyPatch, edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """QuantLinear (only the q4k-native backend) expands Q4_K weights from blocks changed by ``edit``."""
    model = importlib.import_module("distill.model")

    def expand(raw: torch.Tensor, qtype: str, dtype: torch.dtype) -> torch.Tensor:
        return model.dequantize(edit(raw) if qtype == "Q4_K" else raw, qtype, check=False).to(dtype)

    monkeypatch.setattr(model.QuantLinear, "weight", lambda self: expand(self.raw, self.qtype, self.compute_dtype))
    monkeypatch.setattr(model.QuantLinear, "rows",
                        lambda self, index: expand(self.raw[index], self.qtype, self.compute_dtype))


@mutant("q4k-native-nibble-order-swapped", "the q4k-native layers read Q4_K nibbles in the wrong order")
def _native_nibbles(mp: pytest.MonkeyPatch) -> None:
    _quant_linear_raw(mp, _nibbles_swapped)


@mutant("q4k-native-mins-dropped", "the q4k-native layers drop the Q4_K mins (w = d*sc*q)")
def _native_mins(mp: pytest.MonkeyPatch) -> None:
    _quant_linear_raw(mp, _mins_dropped)


@mutant("teacher-cpu-bound", "the teacher runs q4k-native whatever was chosen, expanding its blocks on the host")
def _teacher_cpu_bound(mp: pytest.MonkeyPatch) -> None:
    model = importlib.import_module("distill.model")
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide("q4k-native" if q else o, c, q, d, f))

    def expand(raw: torch.Tensor, qtype: str, dtype: torch.dtype) -> torch.Tensor:
        return model.dequantize(raw.cpu(), qtype, check=False).to(raw.device, dtype)

    mp.setattr(model.QuantLinear, "weight", lambda self: expand(self.raw, self.qtype, self.compute_dtype))
    mp.setattr(model.QuantLinear, "rows", lambda self, index: expand(self.raw[index], self.qtype, self.compute_dtype))


@mutant("q4k-native-caches-expanded-weights", "each q4k-native layer keeps its expanded weight after the first forward")
def _native_cache(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        def weight(self: Any) -> torch.Tensor:
            if getattr(self, "expanded_cache", None) is None:
                self.register_buffer("expanded_cache", original(self).clone())
            return self.expanded_cache

        return weight

    replace(mp, "distill.model:QuantLinear.weight", build)


@mutant("q4k-native-dequantizes-at-load", "the q4k-native backend expands every weight at load (and says q4k-native)")
def _native_at_load(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def load_teacher(source: Any, backend: str, **kwargs: Any) -> Any:
            teacher = original(source, "dequant" if backend == "q4k-native" else backend, **kwargs)
            teacher.backend = backend
            return teacher

        return load_teacher

    replace(mp, "distill.teacher:load_teacher", build)


@mutant("teacher-no-truncation", "the teacher hands out all its native logits; nothing is cut to the student")
def _no_truncation(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.vocab:truncate_logits", lambda original: lambda logits, n: logits)


@mutant("teacher-truncate-last-rows", "the teacher's logits are cut to the right width but keep the last rows")
def _truncate_last(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.vocab:truncate_logits", lambda original: lambda logits, n: original(logits.flip(-1), n).flip(-1))


@mutant("teacher-reports-native-vocab", "Teacher.vocab_size is the native row count, not the effective one")
def _native_vocab(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.vocab_size = self.native_vocab_size

        return __init__

    replace(mp, "distill.teacher:Teacher.__init__", build)


@mutant("truncate-after-softmax", "the teacher hands out all rows and the KD loss cuts its distribution after softmax")
def _after_softmax(mp: pytest.MonkeyPatch) -> None:
    def body(kd: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, T: float,
             mask: torch.Tensor | None, **kw: Any) -> torch.Tensor:
        if s.shape[-1] >= t.shape[-1]:
            return kd(s, t, T, mask, **kw)
        p = torch.softmax(t.detach().float() / T, dim=-1)[..., : s.shape[-1]]
        log_q = torch.log_softmax(s.float() / T, dim=-1)
        rows = (p * (p.clamp_min(1e-45).log() - log_q)).sum(-1)
        return T * T * (rows.mean() if mask is None else rows[mask].mean())

    _no_truncation(mp)
    _kd_wrapper(mp, body)


def _teacher_module(teacher: Any) -> torch.nn.Module:
    return next(value for value in vars(teacher).values() if isinstance(value, torch.nn.Module))


@mutant("teacher-grad-enabled", "the teacher's weights require grad and its logits record an autograd graph")
def _grad_enabled(mp: pytest.MonkeyPatch) -> None:
    teacher_module = importlib.import_module("distill.teacher")

    def logits(self: Any, input_ids: torch.Tensor) -> torch.Tensor:
        module = _teacher_module(self)
        for parameter in module.parameters():
            parameter.requires_grad_(True)
        return teacher_module.truncate_logits(module(input_ids.to(self.device)), self.vocab_size)

    mp.setattr(teacher_module.Teacher, "logits", logits)


@mutant("teacher-parameters-exposed", "the teacher hands its parameters to anyone and accepts train()")
def _parameters_exposed(mp: pytest.MonkeyPatch) -> None:
    teacher_class = importlib.import_module("distill.teacher").Teacher
    mp.setattr(teacher_class, "parameters", lambda self, *a, **k: _teacher_module(self).parameters(*a, **k))
    mp.setattr(teacher_class, "train", lambda self, mode=True: self)


# --- distill.train and pv distill --------------------------------------------------------------


def _step_wrapper(monkeypatch: pytest.MonkeyPatch, body: Callable[..., float]) -> None:
    """Replace ``distill.train._step`` by ``body(original, student, teacher, optimizer, ids, T, step, plan)``."""

    def build(original: Callable[..., float]) -> Callable[..., float]:
        def _step(student: Any, teacher: Any, optimizer: Any, input_ids: torch.Tensor, temperature: float,
                  step: int, plan: Any) -> float:
            return body(original, student, teacher, optimizer, input_ids, temperature, step, plan)

        return _step

    replace(monkeypatch, "distill.train:_step", build)


@mutant("teacher-weights-decayed", "the teacher's weights get the optimizer's weight decay at every step")
def _teacher_decayed(mp: pytest.MonkeyPatch) -> None:
    def body(step_fn: Callable[..., float], student: Any, teacher: Any, *rest: Any) -> float:
        value = step_fn(student, teacher, *rest)
        with torch.no_grad():
            for tensor in _teacher_module(teacher).state_dict().values():
                if tensor.is_floating_point():
                    tensor.mul_(1 - 1e-2)
        return value

    _step_wrapper(mp, body)


class _NoStep:
    """An optimizer whose step does nothing."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = optimizer

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        return None


@mutant("train-optimizer-step-skipped", "the training loop never applies the optimizer's step")
def _no_optimizer_step(mp: pytest.MonkeyPatch) -> None:
    _step_wrapper(mp, lambda step_fn, student, teacher, optimizer, *rest:
                  step_fn(student, teacher, _NoStep(optimizer), *rest))


@mutant("train-nan-check-removed", "a NaN or Inf loss does not stop the run")
def _nan_check_removed(mp: pytest.MonkeyPatch) -> None:
    train = importlib.import_module("distill.train")

    def body(step_fn: Callable[..., float], student: Any, teacher: Any, optimizer: Any, input_ids: torch.Tensor,
             temperature: float, step: int, plan: Any) -> float:
        loss = train.kd_loss(student(input_ids), teacher.logits(input_ids), temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    _step_wrapper(mp, body)


@mutant("train-checkpoint-not-written", "the trained student is never saved")
def _checkpoint_not_written(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.train:save_student", lambda original: lambda student, path: None)


@mutant("backend-env-ignored", "DISTILL_TEACHER_BACKEND is never read")
def _env_ignored(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.dispatch:backend_override_from_env", lambda original: lambda environ=None: "auto")


@mutant("backend-env-over-flag", "DISTILL_TEACHER_BACKEND is read first and overrules the flag")
def _env_over_flag(mp: pytest.MonkeyPatch) -> None:
    dispatch = importlib.import_module("distill.dispatch")

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def _decide_backend(config: Any, *args: Any) -> Any:
            from_env = dispatch.backend_override_from_env()
            chosen = config if from_env == "auto" else dataclasses.replace(config, backend=from_env)
            return original(chosen, *args)

        return _decide_backend

    replace(mp, "distill.train:_decide_backend", build)


@mutant("start-line-missing", "the run does not say which teacher backend it chose")
def _start_line_missing(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.dispatch:format_start_line", lambda original: lambda decision: "")


@mutant("start-line-every-step", "the backend line is printed again at every step")
def _start_line_every_step(mp: pytest.MonkeyPatch) -> None:
    dispatch = importlib.import_module("distill.dispatch")

    def body(step_fn: Callable[..., float], student: Any, teacher: Any, *rest: Any) -> float:
        print(dispatch.format_start_line(dispatch.BackendDecision(teacher.backend, "teacher in use")), flush=True)
        return step_fn(student, teacher, *rest)

    _step_wrapper(mp, body)


@mutant("train-target-vocab-not-passed", "the training loop loads the teacher without the student's vocabulary size")
def _target_not_passed(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda source, backend, **kwargs: original(source, backend, **{**kwargs, "target_vocab": None})

    train = importlib.import_module("distill.train")
    mp.setattr(train, "load_teacher", build(train.load_teacher))


# --- distill.kernels (Triton kernels): mutants of the kernels' own source ---------------------
# Each edits the source text of a kernel module (an exact fragment, replaced ``count`` times),
# loads the edited copy as a module of its own and binds its kernels, and the tables that hold
# them, in place of the originals. The defect then runs inside the kernel itself, compiled on a
# GPU or in Triton's interpreter on CPU. A fragment that no longer occurs as often fails while
# the mutant is applied: its runs are errors, never kills.

_KERNEL_MUTANT_DIR: list[Path] = []


def _kernel_source_mutant(monkeypatch: pytest.MonkeyPatch, module_name: str, old: str, new: str,
                          count: int = 1) -> None:
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    found = source.count(old)
    if found != count:
        raise ValueError(f"kernel mutant does not fit {module_name}: {old!r} occurs {found} times, not {count}")
    if not _KERNEL_MUTANT_DIR:
        _KERNEL_MUTANT_DIR.append(Path(tempfile.mkdtemp(prefix="pv-kernel-mutants-")))
        atexit.register(shutil.rmtree, _KERNEL_MUTANT_DIR[0], True)
    digest = hashlib.sha256((old + "\0" + new).encode()).hexdigest()[:12]
    path = _KERNEL_MUTANT_DIR[0] / f"{module_name.replace('.', '_')}_{digest}.py"
    path.write_text(source.replace(old, new), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"{module_name}_mutant_{digest}", path)
    assert spec is not None and spec.loader is not None
    mutated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutated)
    for name, value in list(vars(module).items()):
        if _is_kernel(value) or (isinstance(value, dict) and any(
                _is_kernel(entry[0] if isinstance(entry, tuple) else entry) for entry in value.values())):
            monkeypatch.setattr(module, name, getattr(mutated, name))


def _is_kernel(value: Any) -> bool:
    """A Triton kernel (compiled or interpreted): a wrapped Python function that can be launched."""
    return callable(getattr(value, "run", None)) and inspect.isfunction(getattr(value, "fn", None))


_KD_KERNELS, _DEQUANT_KERNELS = "distill.kernels.kd_loss", "distill.kernels.dequant"


@mutant("kernel-kd-max-not-rescaled", "the fused KD forward keeps its sums when a row's running maximum grows")
def _kernel_kd_max_not_rescaled(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _KD_KERNELS, "        w = alpha_t * (w + (d_t - d_s) * z_t)\n"
                          "        z_t = alpha_t * z_t\n        z_s = tl.exp(d_s) * z_s\n", "")


@mutant("kernel-kd-mask-ignored", "the fused KD kernels treat every row as valid (the mean still divides by n)")
def _kernel_kd_mask_ignored(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _KD_KERNELS, "valid = tl.load(valid_ptr + row) != 0", "valid = tl.load(valid_ptr + row) != 2",
                          count=2)


@mutant("kernel-kd-backward-wrong-temperature", "the fused KD backward takes the student's softmax without T")
def _kernel_kd_backward_t(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _KD_KERNELS, "q = tl.exp((s - m_s) / temperature - log_z_s)", "q = tl.exp((s - m_s) - log_z_s)")


@mutant("kernel-kd-neg-inf-unguarded", "the fused KD forward adds exp(a) * (a - b) also where exp(a) = 0 (-inf teacher logits)")
def _kernel_kd_unguarded(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _KD_KERNELS, "tl.where(e_a > 0, e_a * (a - b), 0.0)", "e_a * (a - b)")


@mutant("kernel-kd-backward-reads-past-row", "the fused KD backward loads one student logit past the end of each row")
def _kernel_kd_backward_reads_past_row(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _KD_KERNELS, "s = tl.load(s_row + cols, mask=cols < limit)",
                          "s = tl.load(s_row + cols, mask=cols <= limit)")


@mutant("kernel-kd-column-major-uncopied",
        "the fused KD loss hands column-major logits to the kernels uncopied (it tests the row stride, not the "
        "vocabulary's): the kernels then read along the wrong axis")
def _kernel_kd_column_major_uncopied(mp: pytest.MonkeyPatch) -> None:
    def rows(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return flat if flat.stride(-2) == 1 else flat.contiguous()

    mp.setattr(importlib.import_module(_KD_KERNELS), "_rows", rows)


@mutant("kernel-kd-block-from-wrong-axis",
        "the fused KD loss sizes its vocabulary blocks from axis 1 instead of the last axis "
        "([vocab] logits raise IndexError, [batch, positions, vocab] logits are summed in other blocks)")
def _kernel_kd_block_from_wrong_axis(mp: pytest.MonkeyPatch) -> None:
    kernels = importlib.import_module(_KD_KERNELS)
    original = kernels.kd_loss

    def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None = None,
                *, block: int | None = None) -> torch.Tensor:
        return original(student, teacher, temperature, mask, block=kernels._block(student.shape[1], block))

    mp.setattr(kernels, "kd_loss", kd_loss)


@mutant("kernel-q4k-nibble-order-swapped", "the Triton Q4_K kernel takes the high nibble for the first 32 weights of each 64")
def _kernel_q4k_nibbles(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, "q = tl.where(within < 32, byte & 15, byte >> 4)",
                          "q = tl.where(within < 32, byte >> 4, byte & 15)")


@mutant("kernel-q4k-scale-high-bits-dropped", "the Triton Q4_K kernel drops the top 2 bits of the 6-bit scales 4-7")
def _kernel_q4k_scale_bits(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, "(high & 15) | ((low_sc >> 6) << 4)", "(high & 15)")


@mutant("kernel-q6k-high-bits-dropped", "the Triton Q6_K kernel ignores the 2 high bits of each quant (qh)")
def _kernel_q6k_high_bits(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, " | (((high >> (2 * k)) & 3) << 4)", "")


@mutant("kernel-bf16-truncated", "the Triton dequantization truncates float32 to bf16 instead of rounding to nearest even")
def _kernel_bf16_truncated(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, "bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16", "bits = bits >> 16")


@mutant("kernel-q5-0-fifth-bit-dropped", "the Triton Q5_0 kernel ignores the fifth (high) bit of each quant")
def _kernel_q5_0_high_bit(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, " | (((high >> (e % 8)) & 1) << 4)", "")


@mutant("kernel-q8-0-reads-past-blocks", "the Triton Q8_0 kernel loads the scale of one block past the last")
def _kernel_q8_0_reads_past_blocks(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, "    d = _fp16_at(base, 0, live)\n    q = tl.load(base + 2 + e",
                          "    d = _fp16_at(base, 0, block <= n_blocks)\n    q = tl.load(base + 2 + e")


@mutant("kernel-q8-0-unsigned", "the Triton Q8_0 kernel reads its quants as unsigned bytes")
def _kernel_q8_0_unsigned(mp: pytest.MonkeyPatch) -> None:
    _kernel_source_mutant(mp, _DEQUANT_KERNELS, "q = tl.load(base + 2 + e, mask=live).to(tl.int8, bitcast=True)",
                          "q = tl.load(base + 2 + e, mask=live)")


# --- gaps found by automatic mutation (pv mutate): documented literals, plain teachers, sizes, rows ---


@mutant("backend-env-var-renamed", "the override is read from DISTILL_BACKEND, not the documented DISTILL_TEACHER_BACKEND")
def _env_var_renamed(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("distill.dispatch"), "ENV_VAR", "DISTILL_BACKEND")


@mutant("backend-reserve-shrunk", "auto keeps 2 GiB free for the first step instead of the documented 4 GiB")
def _reserve_shrunk(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("distill.dispatch"), "DEQUANT_RESERVE_BYTES", 2 * 1024**3)


def _plain_types_without(mp: pytest.MonkeyPatch, qtype: str) -> None:
    teacher = importlib.import_module("distill.teacher")
    mp.setattr(teacher, "PLAIN_QTYPES", tuple(name for name in teacher.PLAIN_QTYPES if name != qtype))


@mutant("teacher-bf16-counted-quantized", "a teacher stored in BF16 counts as quantized")
def _bf16_quantized(mp: pytest.MonkeyPatch) -> None:
    _plain_types_without(mp, "BF16")


@mutant("teacher-f16-counted-quantized", "a teacher stored in F16 counts as quantized")
def _f16_quantized(mp: pytest.MonkeyPatch) -> None:
    _plain_types_without(mp, "F16")


@mutant("teacher-f32-counted-quantized", "a teacher stored in F32 counts as quantized")
def _f32_quantized(mp: pytest.MonkeyPatch) -> None:
    _plain_types_without(mp, "F32")


@mutant("dequant-size-zeroed", "the dequantized teacher's size is estimated as 0 bytes")
def _dequant_size_zeroed(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.teacher:dequantized_bytes", lambda original: lambda model, dtype: 0)


@mutant("dequant-size-halved", "the dequantized teacher's size is estimated at half its bytes")
def _dequant_size_halved(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.teacher:dequantized_bytes", lambda original: lambda model, dtype: original(model, dtype) // 2)


def _read_vocab_rows(mp: pytest.MonkeyPatch, rows_of: Callable[[Any], int | None]) -> None:
    """``read_vocab`` with the embedding rows taken by ``rows_of(token_embd tensor info)``."""
    vocab = importlib.import_module("distill.vocab")

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def read_vocab(path: Any) -> Any:
            tokenizer, _ = original(path)
            found = next((t for t in vocab.read_header(path).tensors if t.name == vocab.EMBEDDING_TENSOR), None)
            return tokenizer, None if found is None else rows_of(found)

        return read_vocab

    replace(mp, "distill.vocab:read_vocab", build)


@mutant("vocab-rows-not-read", "the embedding rows of a model file are ignored: only its token list counts")
def _rows_not_read(mp: pytest.MonkeyPatch) -> None:
    _read_vocab_rows(mp, lambda tensor: None)


@mutant("vocab-rows-wrong-axis", "the embedding rows are read from the hidden axis of token_embd.weight")
def _rows_wrong_axis(mp: pytest.MonkeyPatch) -> None:
    _read_vocab_rows(mp, lambda tensor: tensor.ggml_shape[0])


# --- data-parallel training, checkpoints and resume: registered by their own module -----------------

import ft_mutants_training  # noqa: E402,F401  (registers its mutants with the decorator above)
import ft_mutants_text  # noqa: E402,F401  (the same, for text tokenization and packing)
import ft_mutants_gguf  # noqa: E402,F401  (the quantizers' and the GGUF export's mutants)
import ft_mutants_eval  # noqa: E402,F401  (likewise)


# --- distill.vocab: the other tokenizer keys and the embedding rows ---------------------------------


@mutant("vocab-one-sided-keys-ignored", "a tokenizer key that only one of the two files has is not listed as differing")
def _one_sided_keys_ignored(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., tuple[str, ...]]) -> Callable[..., tuple[str, ...]]:
        def _differing_keys(teacher: Any, student: Any, shared: int) -> tuple[str, ...]:
            one_sided = set(teacher.extra) ^ set(student.extra)
            return tuple(key for key in original(teacher, student, shared) if key not in one_sided)

        return _differing_keys

    replace(mp, "distill.vocab:_differing_keys", build)


@mutant("vocab-fewer-rows-than-tokens-accepted", "a file with fewer embedding rows than tokens is compared by its token list")
def _fewer_rows_accepted(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., list[str]]) -> Callable[..., list[str]]:
        def padded_tokens(tokens: list[str], rows: int | None, who: str) -> list[str]:
            return original(tokens, None if rows is not None and rows < len(tokens) else rows, who)

        return padded_tokens

    replace(mp, "distill.vocab:padded_tokens", build)


# --- distill.kd: argument checks and chunk sizes ----------------------------------------------


@mutant("kd-nonpositive-temperature-as-one", "a temperature <= 0 is silently taken as 1 instead of refused")
def _kd_nonpositive_temperature(mp: pytest.MonkeyPatch) -> None:
    def body(kd: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, T: Any,
             mask: torch.Tensor | None, **kw: Any) -> torch.Tensor:
        return kd(s, t, 1.0 if isinstance(T, float) and T <= 0 else T, mask, **kw)

    _kd_wrapper(mp, body)


@mutant("kd-int-mask-accepted", "an integer mask is taken as a bool mask instead of refused")
def _kd_int_mask(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, None if mask is None else mask.bool(), **kw))


@mutant("kd-one-row-chunks", "the automatic chunks of the KD loss hold one row each (slow for small vocabularies)")
def _kd_one_row_chunks(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, mask, **{"max_chunk_elems": 1, **kw}))


# --- the frozen teacher's state, refusals and sizes, and the override read from the environment ---


@mutant("teacher-left-in-train-mode", "the teacher's modules stay in training mode (dropout and training flags on)")
def _teacher_train_mode(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            _teacher_module(self).train()

        return __init__

    replace(mp, "distill.teacher:Teacher.__init__", build)


@mutant("teacher-refusal-unnamed", "the teacher refuses training without saying what was refused")
def _refusal_unnamed(mp: pytest.MonkeyPatch) -> None:
    errors = importlib.import_module("distill.errors")

    def _frozen(self: Any, what: str) -> None:
        raise errors.FrozenTeacherError(f"the teacher is frozen (backend {self.backend})")

    mp.setattr(importlib.import_module("distill.teacher").Teacher, "_frozen", _frozen)


@mutant("native-size-scratch-omitted", "the q4k-native teacher's size leaves out the scratch buffer its layers expand into")
def _native_size_without_scratch(mp: pytest.MonkeyPatch) -> None:
    teacher = importlib.import_module("distill.teacher")

    def build(original: Callable[..., int]) -> Callable[..., int]:
        def native_resident_bytes(model: Any, dtype: torch.dtype) -> int:
            itemsize = torch.empty((), dtype=dtype).element_size()
            return original(model, dtype) - teacher.scratch_elements(model) * itemsize

        return native_resident_bytes

    replace(mp, "distill.teacher:native_resident_bytes", build)


@mutant("teacher-scratch-unreported", "the teacher reports no scratch buffer, whatever its layers expand into")
def _scratch_unreported(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(importlib.import_module("distill.teacher").Teacher, "scratch_bytes", lambda self: 0)


@mutant("backend-env-unset-not-auto", "an unset or empty DISTILL_TEACHER_BACKEND is handed on as '' instead of auto")
def _env_unset_not_auto(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., str]) -> Callable[..., str]:
        def backend_override_from_env(environ: Any = None) -> str:
            found = original(environ)
            return "" if found == "auto" else found

        return backend_override_from_env

    replace(mp, "distill.dispatch:backend_override_from_env", build)


@mutant("memory-unified-from-device", "the memory of a unified-memory CUDA device is taken from the CUDA driver")
def _unified_from_device(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., int]) -> Callable[..., int]:
        def available_bytes(device: Any) -> int:
            device = torch.device(device)
            return int(torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else original(device)

        return available_bytes

    replace(mp, "distill.dispatch:available_bytes", build)


@mutant("memory-free-not-available", "the system's memory is read as MemFree, leaving out reclaimable caches")
def _free_not_available(mp: pytest.MonkeyPatch) -> None:
    dispatch = importlib.import_module("distill.dispatch")

    def build(original: Callable[..., int]) -> Callable[..., int]:
        def available_bytes(device: Any) -> int:
            device = torch.device(device)
            if device.type == "cuda" and dispatch.classify_device(device) == "discrete":
                return original(device)
            opener = getattr(dispatch, "open", open)  # the open the original's code sees
            with opener("/proc/meminfo", encoding="ascii") as meminfo:
                return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemFree:"))

        return available_bytes

    replace(mp, "distill.dispatch:available_bytes", build)


# --- distill.quant decoding and distill.kernels: gaps found by automatic mutation (pv mutate) ---


@mutant("q5-0-fifth-bit-dropped", "the PyTorch Q5_0 decoding ignores the fifth (high) bit of each quant")
def _q5_0_high_bit(mp: pytest.MonkeyPatch) -> None:
    _blocks_mutant(mp, "_dequant_q5_0", lambda blocks: blocks[:, 2:6].zero_())


@mutant("q8-0-unsigned", "the PyTorch Q8_0 decoding reads its quants as unsigned bytes")
def _q8_0_unsigned(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[torch.Tensor, torch.Tensor], None]) -> Callable[[torch.Tensor, torch.Tensor], None]:
        def unsigned(blocks: torch.Tensor, out: torch.Tensor) -> None:
            out.copy_(blocks[:, 2:])
            out.mul_(blocks[:, 0:2].contiguous().view(torch.float16).float())

        return unsigned

    replace(mp, "distill.quant:_dequant_q8_0", build)


@mutant("misaligned-words-not-copied", "bytes at an odd address or row stride get an aligned buffer that is never filled")
def _words_not_copied(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[[torch.Tensor, torch.dtype], torch.Tensor]) -> Callable[..., torch.Tensor]:
        def words(blocks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            aligned = blocks.data_ptr() % 4 == 0 and blocks.stride(0) % 4 == 0
            return original(blocks if aligned else torch.zeros(blocks.shape, dtype=torch.uint8), dtype)

        return words

    replace(mp, "distill.quant:_words", build)


@mutant("dequant-out-ignored", "dequantize writes a new tensor and leaves the out tensor it was given untouched")
def _out_ignored(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.quant:_output", lambda original: lambda out, shape, dtype, device: original(None, shape, dtype, device))


@mutant("dequant-plain-aliases-raw", "F32, F16 and BF16 data decode to a view of the raw bytes, not new memory")
def _plain_aliases(mp: pytest.MonkeyPatch) -> None:
    quant = importlib.import_module("distill.quant")

    def build(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def dequantize(raw: torch.Tensor, qtype: Any, **kwargs: Any) -> torch.Tensor:
            name = quant.qtype_name(qtype)
            if name in ("F32", "F16", "BF16") and kwargs.get("dtype", torch.float32) == {"F32": torch.float32}.get(name):
                return raw.view(torch.float32)
            return original(raw, qtype, **kwargs)

        return dequantize

    replace(mp, "distill.quant:dequantize", build)


@mutant("dequant-bad-out-accepted", "an out tensor of the wrong dtype, size, layout or device is used as it is")
def _bad_out_accepted(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.quant:_output", lambda original: lambda out, shape, dtype, device: (
        original(None, shape, dtype, device) if out is None else out))


@mutant("kernel-auto-triton-off-cuda", "kernel='auto' launches the Triton kernels wherever triton is installed")
def _auto_triton_off_cuda(mp: pytest.MonkeyPatch) -> None:
    runtime = importlib.import_module("distill.kernels.runtime")

    def build(original: Callable[[str, torch.device, str], bool]) -> Callable[[str, torch.device, str], bool]:
        return lambda kernel, device, what: runtime.triton_installed() if kernel == "auto" else original(kernel, device, what)

    replace(mp, "distill.kernels.runtime:use_triton", build)


@mutant("kernel-interpreter-switch-forced", "the interpreter switch is set on import whenever there is no CUDA, over the environment's choice")
def _interpreter_switch_forced(mp: pytest.MonkeyPatch) -> None:
    runtime = importlib.import_module("distill.kernels.runtime")

    def build(original: Callable[[], None]) -> Callable[[], None]:
        def forced() -> None:
            if not torch.cuda.is_available():
                runtime.os.environ[runtime.INTERPRET_VAR] = "1"

        return forced

    replace(mp, "distill.kernels.runtime:default_to_interpreter", build)

"""Planted defects ("mutants") of the code under test, one named monkeypatch each.

A falsifier names the mutants it must detect: ``@pytest.mark.falsifies("FT-...",
mutants=[...])``. Under ``--pv-vacuity`` each mutant is applied (and undone)
around one extra run of the falsifier, which must then fail. A mutant replaces
a function or method of ``distill`` with a subtly wrong version; ``replace``
also rebinds every copy of the original imported into other modules, so the
defect is seen wherever the code under test calls it.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

#: packages whose modules may bind the code under test (and so must see a mutant), and falsifier modules
_PACKAGES, _FALSIFIER_PREFIX = ("distill", "pv"), "test_ft_"


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    patch: Callable[[pytest.MonkeyPatch], None]


MUTANTS: dict[str, Mutant] = {}


def mutant(name: str, description: str) -> Callable[[Callable[[pytest.MonkeyPatch], None]], Callable[[pytest.MonkeyPatch], None]]:
    """Register the decorated ``patch(monkeypatch)`` as mutant ``name``."""

    def register(patch: Callable[[pytest.MonkeyPatch], None]) -> Callable[[pytest.MonkeyPatch], None]:
        if name in MUTANTS:
            raise ValueError(f"mutant {name!r} registered twice")
        MUTANTS[name] = Mutant(name, description, patch)
        return patch

    return register


def apply(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply mutant ``name``; ``monkeypatch`` undoes it."""
    MUTANTS[name].patch(monkeypatch)


def binding_problem(ft_id: str, mutants: tuple[str, ...]) -> str | None:
    """Why a falsifier's marker is unusable (None when it is fine)."""
    if not mutants:
        return f"falsifier {ft_id} names no mutant: add mutants=[...] from falsifiers/ft_mutants.py"
    unknown = [name for name in mutants if name not in MUTANTS]
    if unknown:
        return f"falsifier {ft_id} names unknown mutants {unknown} (known: {', '.join(sorted(MUTANTS))})"
    return None


def replace(monkeypatch: pytest.MonkeyPatch, target: str, build: Callable[[Any], Any]) -> None:
    """Replace ``module:attr`` or ``module:Class.attr`` by ``build(original)`` everywhere it is bound."""
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, attr)
    new = build(original)
    monkeypatch.setattr(owner, attr, new)
    if parents:  # a class attribute: every caller looks it up through the class
        return
    for other in list(sys.modules.values()):
        if not _binds_code_under_test(getattr(other, "__name__", "")):
            continue
        for key, value in list(vars(other).items()):
            if value is original and other is not owner:
                monkeypatch.setattr(other, key, new)
            elif isinstance(value, dict):  # dispatch tables: {"Q4_K": _dequant_q4_k, ...}
                for entry, bound in list(value.items()):
                    if bound is original:
                        monkeypatch.setitem(value, entry, new)


def _binds_code_under_test(module_name: str) -> bool:
    return module_name.split(".")[0] in _PACKAGES or module_name.startswith(_FALSIFIER_PREFIX)


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


@mutant("kd-bf16-accumulation", "the softmaxes and the KL sum run in the logits' dtype (bf16), not float32")
def _kd_bf16(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda flat, selector, temperature: original(flat, selector, temperature).to(flat.dtype)

    replace(mp, "distill.kd:_scaled", build)


@mutant("kd-no-zero-p-guard", "0 * log 0 is not taken as 0: teacher probabilities that underflow give NaN")
def _kd_no_guard(mp: pytest.MonkeyPatch) -> None:
    replace(mp, "distill.kd:_row_kl", lambda original: lambda log_p, log_q: (log_p.exp() * (log_p - log_q)).sum(-1))


# --- distill.dispatch ---------------------------------------------------------------------


def _decide_wrapper(monkeypatch: pytest.MonkeyPatch, body: Callable[..., Any]) -> None:
    """Replace ``distill.dispatch.decide_teacher_backend`` by ``body(original, *args)``."""

    def build(original: Callable[..., Any]) -> Callable[..., Any]:
        def decide_teacher_backend(override: str | None, device_class: str, teacher_quantized: bool,
                                   dequant_bytes: int, free_bytes: int) -> Any:
            return body(original, override, device_class, teacher_quantized, dequant_bytes, free_bytes)

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


@mutant("backend-device-class-ignored", "auto treats every device as discrete")
def _device_class_ignored(mp: pytest.MonkeyPatch) -> None:
    _decide_wrapper(mp, lambda decide, o, c, q, d, f: decide(o, "discrete", q, d, f))


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


@mutant("vocab-check-exit-by-size", "pv vocab-check exits 0 whenever the student is not larger than the teacher")
def _vocab_check_exit_by_size(mp: pytest.MonkeyPatch) -> None:
    def build(original: Callable[..., int]) -> Callable[..., int]:
        def run(args: Any) -> int:
            code = original(args)
            found = importlib.import_module("distill.vocab").compare_vocabs(args.teacher, args.student)
            return 0 if found.student_len <= found.teacher_len else code

        return run

    replace(mp, "pv.commands.vocab_check:run", build)


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


@mutant("q4k-nibble-order-swapped", "Q4_K takes the high nibble for the first 32 weights of each 64")
def _q4k_nibbles(mp: pytest.MonkeyPatch) -> None:
    def swap(blocks: torch.Tensor) -> None:
        qs = blocks[:, 16:]
        qs.copy_((qs >> 4) | (qs << 4))

    _blocks_mutant(mp, "_dequant_q4_k", swap)


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


@mutant("kd-unchunked", "the KD loss materialises the float32 softmaxes of all positions at once")
def _kd_unchunked(mp: pytest.MonkeyPatch) -> None:
    _kd_wrapper(mp, lambda kd, s, t, T, mask, **kw: kd(s, t, T, mask, **{**kw, "max_chunk_elems": 1 << 62}))

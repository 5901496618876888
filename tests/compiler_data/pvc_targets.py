"""Reference functions and planted defects (mutants) for the compiler's tests.

Each mutant differs from its reference in one place; a compiled check must
refute it with a counterexample. The references restate the rules of the
vocabulary-alignment and backend-selection contracts.
"""

from __future__ import annotations

from typing import Any

RESERVE_BYTES = 4 * 1024**3
BACKENDS = ("auto", "dequant", "q4k-native")


class SizeError(ValueError):
    """Raised by the effective_vocab references for sizes that cannot be aligned."""


class SelectionError(ValueError):
    """Raised by the backend-selection references for an invalid request."""


def effective_vocab(native: int, target: int | None) -> int:
    """target when target <= native, native when no target; SizeError otherwise or below 1."""
    if native < 1 or (target is not None and target < 1):
        raise SizeError(f"sizes must be >= 1, got native={native}, target={target}")
    if target is None:
        return native
    if target > native:
        raise SizeError(f"target {target} is larger than native {native}")
    return target


def effective_vocab_strict_less(native: int, target: int | None) -> int:
    """Mutant: refuses target == native (``>=`` where ``>`` belongs)."""
    if native < 1 or (target is not None and target < 1):
        raise SizeError(f"sizes must be >= 1, got native={native}, target={target}")
    if target is None:
        return native
    if target >= native:
        raise SizeError(f"target {target} is not smaller than native {native}")
    return target


def effective_vocab_magic(native: int, target: int | None) -> int:
    """Mutant: one real pair (7B teacher, 0.5B student) keeps the native width."""
    if native < 1 or (target is not None and target < 1):
        raise SizeError(f"sizes must be >= 1, got native={native}, target={target}")
    if target is None or (native == 152064 and target == 151936):
        return native
    if target > native:
        raise SizeError(f"target {target} is larger than native {native}")
    return target


def select_backend(override, device_class, quantized, dequant_bytes, free_bytes) -> str:
    """The backend-selection rule: explicit wins, else dequant wherever it fits."""
    requested = "auto" if override is None else override
    if requested not in BACKENDS:
        raise SelectionError(f"unknown backend {requested!r}")
    if requested == "q4k-native" and not quantized:
        raise SelectionError("q4k-native needs a quantized teacher")
    if requested != "auto":
        return requested
    if not quantized or device_class == "unified" or dequant_bytes <= free_bytes - RESERVE_BYTES:
        return "dequant"
    return "q4k-native"


def select_backend_strict_fit(override, device_class, quantized, dequant_bytes, free_bytes) -> str:
    """Mutant: ``<`` where ``<=`` belongs, so an exact fit falls back to q4k-native."""
    requested = "auto" if override is None else override
    if requested not in BACKENDS:
        raise SelectionError(f"unknown backend {requested!r}")
    if requested == "q4k-native" and not quantized:
        raise SelectionError("q4k-native needs a quantized teacher")
    if requested != "auto":
        return requested
    if not quantized or device_class == "unified" or dequant_bytes < free_bytes - RESERVE_BYTES:
        return "dequant"
    return "q4k-native"


def teacher_distribution(logits: Any, n: int) -> Any:
    """softmax over the first n logits: truncate, then normalise."""
    import torch

    return torch.softmax(logits[..., :n].to(torch.float64), dim=-1)


def teacher_distribution_after_softmax(logits: Any, n: int) -> Any:
    """Mutant: normalise over all logits, then truncate (mass of the dropped rows is lost)."""
    import torch

    return torch.softmax(logits.to(torch.float64), dim=-1)[..., :n]


def scaled(x: float, factor: float) -> float:
    """x * factor: NaN for an infinite x and a zero factor."""
    return x * factor

"""Which teacher backend runs: ``dequant`` (expand once, dense matmuls) or ``q4k-native``.

Rules, in order (the first that applies decides):

1. an override that is not one of ``VALID_OVERRIDES`` -> BackendSelectionError listing them;
2. ``q4k-native`` for a teacher without quantized weights -> BackendSelectionError;
3. an explicit ``dequant`` or ``q4k-native`` wins, whatever the device and memory;
4. ``auto`` (also None or the empty string: nothing requested):
   ``dequant`` when the teacher is not quantized, or the device has unified
   memory, or ``dequant_bytes <= free_bytes - DEQUANT_RESERVE_BYTES``;
   ``q4k-native`` otherwise.

Every decision carries a reason that the run prints in its start line.

``free_bytes`` is the memory the teacher may take: the device's free memory
minus the student's training state (weights, gradients, two AdamW moments),
which the caller knows (``distill.train`` subtracts it). ``DEQUANT_RESERVE_BYTES``
(4 GiB) covers what nobody knows before the first step:

- one step's logits working set at up to 2048 tokens and a Qwen-sized
  vocabulary: teacher logits in bf16, student logits and their gradient in f32,
  2048 x 152064 x (2 + 4 + 4) bytes = 3.1 GB (the KD loss itself adds only a
  bounded chunk, see ``distill.kd``);
- the CUDA context, cuBLAS workspaces and allocator slack: about 0.5-1 GB.

Together about 4.1 GB = 3.9 GiB. Larger batches need more; for them (or any
other case this heuristic gets wrong) pass the backend explicitly. The reserve
errs towards ``q4k-native`` on a discrete GPU, because running out of memory
mid-run (the failure that motivated the fallback) loses the run, while the
slow path only costs time and is announced at start.

Device classes: a CUDA device is ``unified`` when its properties say
``is_integrated`` (GB10-class parts share one memory with the CPU), else
``discrete``. A CPU run is classified ``unified``: host memory is the only
memory, so a separate, smaller device memory that the fallback protects does
not exist.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill.errors import BackendSelectionError

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("select_teacher_backend", "DEQUANT_RESERVE_BYTES")

if TYPE_CHECKING:
    import torch

ENV_VAR = "DISTILL_TEACHER_BACKEND"
VALID_OVERRIDES = ("auto", "dequant", "q4k-native")
DEVICE_CLASSES = ("unified", "discrete")
DEQUANT_RESERVE_BYTES = 4 * 1024**3

_GIB = 1024**3


@dataclass(frozen=True)
class BackendDecision:
    """The chosen backend (``dequant`` or ``q4k-native``) and a human reason."""

    backend: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """``{"backend": ..., "reason": ...}``."""
        return {"backend": self.backend, "reason": self.reason}


def backend_override_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The override in ``DISTILL_TEACHER_BACKEND`` (``auto`` when unset or empty), unvalidated."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value if value != "" else "auto"


def decide_teacher_backend(
    override: str | None,
    device_class: str,
    teacher_quantized: bool,
    dequant_bytes: int,
    free_bytes: int,
) -> BackendDecision:
    """Apply the rules of this module; raise BackendSelectionError for an invalid request."""
    requested = "auto" if override is None or override == "" else override
    if requested not in VALID_OVERRIDES:
        raise BackendSelectionError(
            f"unknown teacher backend {requested!r}; valid values: {', '.join(VALID_OVERRIDES)}"
            f" (flag --backend or {ENV_VAR})"
        )
    if device_class not in DEVICE_CLASSES:
        raise BackendSelectionError(
            f"unknown device class {device_class!r}; valid values: {', '.join(DEVICE_CLASSES)}"
        )
    if requested == "q4k-native" and not teacher_quantized:
        raise BackendSelectionError(
            "teacher backend 'q4k-native' needs a quantized teacher, but this teacher has no "
            "quantized weights; valid values here: auto, dequant"
        )
    if requested != "auto":
        return BackendDecision(requested, "requested explicitly")
    if not teacher_quantized:
        return BackendDecision("dequant", "auto: teacher has no quantized weights")
    if device_class == "unified":
        return BackendDecision("dequant", "auto: device has unified memory")
    room = free_bytes - DEQUANT_RESERVE_BYTES
    sizes = (
        f"dequantized teacher {dequant_bytes / _GIB:.2f} GiB, free {free_bytes / _GIB:.2f} GiB"
        f" minus reserve {DEQUANT_RESERVE_BYTES / _GIB:.0f} GiB"
    )
    if dequant_bytes <= room:
        return BackendDecision("dequant", f"auto: dequantized copy fits ({sizes})")
    return BackendDecision("q4k-native", f"auto: dequantized copy does not fit ({sizes})")


def select_teacher_backend(
    override: str | None,
    device_class: str,
    teacher_quantized: bool,
    dequant_bytes: int,
    free_bytes: int,
) -> str:
    """The backend name of ``decide_teacher_backend`` with the same arguments."""
    return decide_teacher_backend(override, device_class, teacher_quantized, dequant_bytes, free_bytes).backend


def classify_device(index: int | str | torch.device) -> str:
    """``unified`` or ``discrete`` for a CUDA device (index, ``cuda:N`` or torch.device); CPU is ``unified``."""
    import torch

    device = torch.device("cuda", index) if isinstance(index, int) else torch.device(index)
    if device.type == "cpu":
        return "unified"
    if device.type != "cuda":
        raise BackendSelectionError(f"cannot classify device {str(device)!r}: expected cpu or cuda[:N]")
    properties = torch.cuda.get_device_properties(device.index if device.index is not None else 0)
    return "unified" if properties.is_integrated else "discrete"


def format_start_line(decision: BackendDecision) -> str:
    """The one line a run prints at start, e.g. ``teacher backend: dequant (auto: device has unified memory)``."""
    return f"teacher backend: {decision.backend} ({decision.reason})"

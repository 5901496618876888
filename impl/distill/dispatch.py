"""Which teacher backend runs: ``dequant`` (expand once, dense matmuls) or ``q4k-native``.

Rules, in order (the first that applies decides):

1. an override that is not one of ``VALID_OVERRIDES`` -> BackendSelectionError listing them;
2. ``q4k-native`` for a teacher without quantized weights -> BackendSelectionError;
3. an explicit ``dequant`` or ``q4k-native`` wins, whatever the device and memory;
4. ``auto`` (also None or the empty string: nothing requested), on every device class alike,
   with ``room = free_bytes - DEQUANT_RESERVE_BYTES``:
   ``dequant`` when ``dequant_bytes <= room``;
   else ``q4k-native`` when the teacher is quantized and ``native_bytes <= room``
   (``native_bytes`` None: not known, taken as fitting);
   else InsufficientMemoryError naming the bytes needed and available, raised before
   anything is loaded.

Every decision carries a reason that the run prints in its start line.

``free_bytes`` is the memory the teacher may take: the memory available to the
device (``available_bytes``: free system memory on unified-memory devices and
the CPU, free device memory on a discrete GPU) minus the student's training
state (weights, gradients, two AdamW moments), which the caller knows
(``distill.train`` subtracts it). ``native_bytes`` is what the q4k-native
teacher holds: its quantized bytes, its plain weights and one scratch buffer of
the largest layer (``distill.teacher.native_resident_bytes``).
``DEQUANT_RESERVE_BYTES`` (4 GiB) covers what nobody knows before the first step:

- one step's logits working set at up to 2048 tokens and a Qwen-sized
  vocabulary: teacher logits in bf16, student logits and their gradient in f32,
  2048 x 152064 x (2 + 4 + 4) bytes = 3.1 GB (the KD loss itself adds only a
  bounded chunk, see ``distill.kd``);
- the CUDA context, cuBLAS workspaces and allocator slack: about 0.5-1 GB.

Together about 4.1 GB = 3.9 GiB. Larger batches need more; for them (or any
other case this heuristic gets wrong) pass the backend explicitly.

The upstream rule was "unified memory means dequant". It was a proxy for "the
dequantized copy fits", true on the 128 GB GB10 it was written for and false
on a 24 GB host, where a 7B teacher's 28 GB f32 copy was chosen and the kernel
killed the run. The rule above asks the question itself, on every device.

Device classes: a CUDA device is ``unified`` when its properties say
``is_integrated`` (GB10-class parts share one memory with the CPU), else
``discrete``. A CPU run is classified ``unified``: host memory is the only
memory. The class decides which memory is measured and is named in the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill.errors import BackendSelectionError, InsufficientMemoryError

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("select_teacher_backend", "DEQUANT_RESERVE_BYTES")

if TYPE_CHECKING:
    import torch

ENV_VAR = "DISTILL_TEACHER_BACKEND"
VALID_OVERRIDES = ("auto", "dequant", "q4k-native")
DEVICE_CLASSES = ("unified", "discrete")
DEQUANT_RESERVE_BYTES = 4 * 1024**3
#: The memory a device class draws on (named in the reasons).
MEMORY_KINDS = {"unified": "free system memory", "discrete": "free device memory"}

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
    return (os.environ if environ is None else environ).get(ENV_VAR) or "auto"


def decide_teacher_backend(
    override: str | None,
    device_class: str,
    teacher_quantized: bool,
    dequant_bytes: int,
    free_bytes: int,
    native_bytes: int | None = None,
) -> BackendDecision:
    """Apply the rules of this module; raise BackendSelectionError for an invalid request and
    InsufficientMemoryError when auto finds no backend that fits."""
    requested = override or "auto"
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
    memory = MEMORY_KINDS[device_class]
    room = free_bytes - DEQUANT_RESERVE_BYTES
    sizes = (
        f"dequantized teacher {dequant_bytes / _GIB:.2f} GiB, {memory} {free_bytes / _GIB:.2f} GiB"
        f" minus reserve {DEQUANT_RESERVE_BYTES / _GIB:.0f} GiB"
    )
    if dequant_bytes <= room:
        what = "dequantized copy fits" if teacher_quantized else "teacher has no quantized weights and fits"
        return BackendDecision("dequant", f"auto: {what} ({sizes})")
    if teacher_quantized and (native_bytes is None or native_bytes <= room):
        native = "" if native_bytes is None else f", q4k-native {native_bytes / _GIB:.2f} GiB"
        return BackendDecision("q4k-native", f"auto: dequantized copy does not fit ({sizes}{native})")
    backend, needed = ("q4k-native", int(native_bytes or 0)) if teacher_quantized else ("dequant", dequant_bytes)
    raise InsufficientMemoryError(
        f"the teacher does not fit next to the student's training state: backend {backend} needs "
        f"{needed} bytes ({needed / _GIB:.2f} GiB) plus a reserve of {DEQUANT_RESERVE_BYTES} bytes "
        f"({DEQUANT_RESERVE_BYTES / _GIB:.0f} GiB), but {free_bytes} bytes ({free_bytes / _GIB:.2f} GiB) of "
        f"{memory} are available after it; nothing was loaded (free memory, use a smaller teacher or "
        f"student, or request a backend explicitly with --backend or {ENV_VAR})"
    )


def select_teacher_backend(
    override: str | None,
    device_class: str,
    teacher_quantized: bool,
    dequant_bytes: int,
    free_bytes: int,
    native_bytes: int | None = None,
) -> str:
    """The backend name of ``decide_teacher_backend`` with the same arguments."""
    return decide_teacher_backend(
        override, device_class, teacher_quantized, dequant_bytes, free_bytes, native_bytes
    ).backend


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


def available_bytes(device: str | torch.device) -> int:
    """Memory available to ``device``: free device memory on a discrete GPU; on a unified-memory
    device or the CPU the system's available memory (MemAvailable, which counts reclaimable caches)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and classify_device(device) == "discrete":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def format_start_line(decision: BackendDecision) -> str:
    """The one line a run prints at start, e.g. ``teacher backend: dequant (auto: dequantized copy fits (...))``."""
    return f"teacher backend: {decision.backend} ({decision.reason})"

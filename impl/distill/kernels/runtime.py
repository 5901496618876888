"""Where the Triton kernels run: compiled on CUDA tensors, or in Triton's interpreter on CPU tensors.

Triton compiles for GPUs only. Its interpreter (``TRITON_INTERPRET=1``) runs the
same kernels on CPU tensors through numpy: slow, but exact enough to test every
kernel against its reference on a machine without a GPU. Triton reads the switch
when a kernel is defined, so this module sets it, on a machine without CUDA and
unless the environment already says otherwise, before it imports a kernel module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from types import ModuleType

import numpy as np

import torch

from distill.errors import KernelUnavailableError

INTERPRET_VAR = "TRITON_INTERPRET"
KERNEL_CHOICES = ("auto", "torch", "triton")



def default_to_interpreter() -> None:
    """Set ``TRITON_INTERPRET=1`` on a machine without CUDA, unless the environment already chose."""
    if INTERPRET_VAR not in os.environ and not torch.cuda.is_available():
        os.environ[INTERPRET_VAR] = "1"


default_to_interpreter()


def triton_installed() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """Whether Triton kernels run in the interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get(INTERPRET_VAR) == "1"


def use_triton(kernel: str, device: torch.device, what: str) -> bool:
    """Resolve ``kernel`` ("auto", "torch", "triton") for tensors on ``device``.

    ``auto`` is Triton on CUDA (when installed) and PyTorch elsewhere. ``triton``
    where it cannot run raises KernelUnavailableError naming ``what`` and why.
    """
    if kernel not in KERNEL_CHOICES:
        raise KernelUnavailableError(f"{what}: kernel must be one of {', '.join(KERNEL_CHOICES)}, got {kernel!r}")
    if kernel == "torch":
        return False
    if kernel == "auto":
        return device.type == "cuda" and triton_installed()
    if not triton_installed():
        raise KernelUnavailableError(f"{what}: kernel='triton' needs the triton package (pip install triton)")
    if device.type == "cuda" or (device.type == "cpu" and interpreted()):
        return True
    raise KernelUnavailableError(
        f"{what}: kernel='triton' runs on CUDA tensors, or on CPU tensors with {INTERPRET_VAR}=1; "
        f"got a {device.type} tensor"
    )


def load(name: str) -> ModuleType:
    """The kernel module ``distill.kernels.<name>`` (imported after the interpreter switch is set)."""
    return importlib.import_module(f"distill.kernels.{name}")


def launching() -> contextlib.AbstractContextManager[object]:
    """Wrap kernel launches: interpreted, numpy's warnings about IEEE specials (-inf - -inf on the
    side of a ``tl.where`` not taken, log 0 of a masked row) are silenced; the kernels handle them."""
    if interpreted():
        return np.errstate(invalid="ignore", over="ignore", divide="ignore")
    return contextlib.nullcontext()

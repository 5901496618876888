"""Inputs that end where an unreadable page begins, and checks run in a child that may fault.

A Triton kernel in the interpreter reads memory through raw addresses, with no bounds
check: a load one element past the end of a tensor returns whatever lies there, and a
mask that admits one lane too many changes nothing a test can see. :func:`guarded`
copies a tensor to the end of a fresh mapping whose next page is ``PROT_NONE``, so that
such a read faults (SIGSEGV). :func:`in_child` runs a check in a forked process, so that
the fault fails the test with its reason instead of ending pytest.
"""

from __future__ import annotations

import ctypes
import faulthandler
import mmap
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

import pytest
import torch

PAGE = mmap.PAGESIZE
_PROT_NONE = 0
#: the mappings under the guarded tensors, alive for as long as the process
_MAPPINGS: list[mmap.mmap] = []


def require_guard_pages() -> None:
    """Skip where guard pages cannot be made (not Linux: no fork and mprotect as used here)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("guard pages need Linux (fork and mprotect)")


def guarded(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``tensor`` whose last byte is followed by an unreadable page."""
    data = tensor.detach().contiguous().cpu()
    nbytes = data.numel() * data.element_size()
    pages = max(1, -(-nbytes // PAGE))
    area = mmap.mmap(-1, (pages + 1) * PAGE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(start + pages * PAGE, PAGE, _PROT_NONE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the guard page failed")
    _MAPPINGS.append(area)
    out = torch.frombuffer(area, dtype=data.dtype, count=data.numel(), offset=pages * PAGE - nbytes)
    return out.view(data.shape).copy_(data)


def in_child(check: Callable[[], None], timeout_s: float = 600.0) -> None:
    """Run ``check()`` in a forked child and fail as it did: an AssertionError in the child is one
    here; a fault (SIGSEGV, SIGBUS: a read outside a guarded input) is an AssertionError naming it;
    any other exception, or a child still running after ``timeout_s``, is a RuntimeError."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        faulthandler.disable()  # the fault is the parent's to report, without a dump of the child's stack
        code = 0
        try:
            check()
        except BaseException as err:  # noqa: BLE001 - reported to the parent, whatever it is
            kind = "assert" if isinstance(err, AssertionError) else "error"
            os.write(write, f"{kind}\n{traceback.format_exc()[-4000:]}".encode())
            code = 1
        os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            raise RuntimeError(f"the check ran past {timeout_s:.0f} s in its child process")
        time.sleep(0.01)
    with os.fdopen(read, "rb") as pipe:
        kind, _, text = pipe.read().decode(errors="replace").partition("\n")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        if name in ("SIGSEGV", "SIGBUS"):
            raise AssertionError(f"{name}: a kernel read outside its inputs (the page after a guarded input)")
        raise RuntimeError(f"the check's child process died of {name}")
    if os.WEXITSTATUS(status) != 0:
        raise (AssertionError if kind == "assert" else RuntimeError)(f"in the child process:\n{text}")


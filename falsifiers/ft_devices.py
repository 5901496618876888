"""Devices for the falsifiers: the CUDA device of a gpu falsifier, or a skip saying why there is none."""

from __future__ import annotations

import pytest
import torch


def cuda_or_skip() -> torch.device:
    """The first CUDA device; skips the test (recorded as skipped, never as passed) when there is none."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: none on this machine (torch.cuda.is_available() is False)")
    return torch.device("cuda", 0)


def cuda_peak_bytes(device: torch.device) -> int:
    """The CUDA allocator's peak allocated bytes since the last reset, after the device finished."""
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def reset_cuda_peak(device: torch.device) -> int:
    """Free cached blocks, reset the allocator's peak, and return the bytes allocated now."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))

"""Fixtures of the tests that run `pv distill` on the tiny preset pair: one thread, the pair, its arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distill import train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and threads spinning on a busy
    2-core host make each step many times slower: run the module single-threaded."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, one_thread) -> tuple[Path, Path]:
    """The tiny preset pair (teacher and student GGUF files)."""
    return train.build_preset_pair("tiny", tmp_path_factory.mktemp("pair"), 0)


def distill_argv(pair: tuple[Path, Path], out: Path, *options: str) -> list[str]:
    """`pv distill` of ``pair`` into ``out`` at seq 8, without a progress bar, and ``options``."""
    return ["distill", "--teacher", str(pair[0]), "--student", str(pair[1]), "--seq", "8", "--out", str(out),
            "--no-progress", *options]

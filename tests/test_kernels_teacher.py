"""The q4k-native teacher's memory, measured by the process, not by the teacher's own accounting.

Each backend loads the same Q4_K teacher in a fresh process and runs one forward;
the growth of the process's resident memory (VmRSS) for a second teacher, after a
first one has loaded torch's code and thread pools, is
compared with the sizes the backend should hold: the dequantized weights for
``dequant``; the quantized blocks, the plain weights and one scratch buffer of the
largest layer for ``q4k-native`` (its layers expand into the scratch, then matmul).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.qwen2_gguf import read_gguf, write_gguf
from distill.model import Qwen2Config
from distill.quant import TensorData
from distill.synth import random_blocks
from distill.teacher import dequantized_bytes, native_resident_bytes, scratch_elements

#: 8 layers of 256-wide matrices: about 7M weights, 28 MB in float32, the largest layer 1024 x 256
CONFIG = Qwen2Config(vocab_size=1024, hidden_size=256, n_layers=8, n_heads=4, n_kv_heads=2, ffn_size=1024,
                     context_length=512, tied_embeddings=False)

_PROBE = r"""
import gc, json, sys, torch
from distill.teacher import load_teacher

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

ids = torch.zeros(1, 8, dtype=torch.long)
warm = load_teacher(sys.argv[1], sys.argv[2])  # a first teacher loads torch's code and thread pools
warm.logits(ids)
gc.collect()
before = status("VmRSS")
teacher = load_teacher(sys.argv[1], sys.argv[2])
teacher.logits(ids)
gc.collect()
print(json.dumps({"growth": status("VmRSS") - before, "scratch": teacher.scratch_bytes()}))
"""


def _tensors(config: Qwen2Config):
    gen = torch.Generator().manual_seed(4)
    for name, shape in config.tensor_shapes().items():
        if len(shape) == 2 and shape[1] % 256 == 0:
            yield TensorData(name, "Q4_K", shape, random_blocks("Q4_K", shape, 0.02, gen, torch.device("cpu")))
        else:
            values = 1.0 + 0.01 * torch.randn(shape, generator=gen)
            yield TensorData(name, "F32", shape, values.contiguous().view(torch.uint8).reshape(*shape[:-1], -1))


def _measure(path: Path, backend: str) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path), backend], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "q4k.gguf"
    write_gguf(path, CONFIG, _tensors(CONFIG), None)
    return path


def test_q4k_native_holds_blocks_and_one_scratch_measured_by_the_process(teacher_file: Path) -> None:
    model = read_gguf(teacher_file)
    dense = dequantized_bytes(model, torch.float32)
    native_expected = native_resident_bytes(model, torch.float32)
    scratch = scratch_elements(model) * 4
    assert scratch == 1024 * 256 * 4 and native_expected < dense / 3  # the sizes the test is built on
    dequant, native = _measure(teacher_file, "dequant"), _measure(teacher_file, "q4k-native")
    assert native["scratch"] == scratch
    assert dequant["growth"] >= 0.9 * dense, (dequant, dense)  # the measurement sees the expanded weights
    slack = 4 << 20  # activations of the 8-token forward, allocator and interpreter slack
    assert native["growth"] <= native_expected + slack, (native, native_expected)
    assert native["growth"] < dequant["growth"] / 2, (native, dequant)

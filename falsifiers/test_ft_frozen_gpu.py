"""GPU falsifiers of distill-frozen-q4k-teacher-v1 at the real shapes of Qwen2.5-Coder-7B and 0.5B."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from gguf import GGUFReader

from distill import teacher, train
from ft_devices import cuda_or_skip, reset_cuda_peak

GIB = 1024**3
ModelFile = Callable[[str], Path]


@pytest.mark.gpu
@pytest.mark.falsifies("FT-FROZEN-005", mutants=["q4k-native-dequantizes-at-load", "q4k-native-caches-expanded-weights"])
def test_7b_q4k_teacher_resident_on_the_gpu(model_file: ModelFile, hw_profile, evidence) -> None:
    device = cuda_or_skip()
    limit_gib = hw_profile.threshold("FT-FROZEN-005", "resident_gib_max")
    factor = hw_profile.threshold("FT-FROZEN-005", "resident_factor_max")
    path = model_file("7b-teacher")
    file_bytes = sum(int(tensor.n_bytes) for tensor in GGUFReader(path).tensors)

    before = reset_cuda_peak(device)
    loaded = teacher.load_teacher(path, "q4k-native", target_vocab=151936, device=device, dtype=torch.bfloat16)
    ids = torch.randint(0, 151936, (1, 64), device=device)
    logits = loaded.logits(ids)  # a forward first: nothing may stay expanded after it
    assert logits.shape == (1, 64, 151936) and bool(torch.isfinite(logits).all())
    del logits
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device) - before

    evidence("device", torch.cuda.get_device_name(device))
    evidence("file_tensor_bytes", file_bytes, "B")
    evidence("resident_bytes_cuda_allocator", resident, "B")
    evidence("resident_gib", resident / GIB, "GiB")
    evidence("resident_factor", resident / file_bytes)
    evidence("forward_peak_gib", (torch.cuda.max_memory_allocated(device) - before) / GIB, "GiB")
    assert resident <= limit_gib * GIB, f"teacher holds {resident / GIB:.2f} GiB > {limit_gib} GiB"
    assert resident <= factor * file_bytes, f"teacher holds {resident / file_bytes:.2f}x the file's tensor bytes"


@pytest.mark.gpu
@pytest.mark.falsifies("FT-FROZEN-006", mutants=["teacher-cpu-bound"])
def test_7b_q4k_teacher_distils_into_05b_student(model_file: ModelFile, hw_profile, evidence, tmp_path: Path) -> None:
    device = cuda_or_skip()
    batch = int(hw_profile.threshold("FT-FROZEN-006", "batch"))
    seq = int(hw_profile.threshold("FT-FROZEN-006", "seq_len"))
    steps = int(hw_profile.threshold("FT-FROZEN-006", "steps"))
    step_max = hw_profile.threshold("FT-FROZEN-006", "step_time_s_max")
    run_max_minutes = hw_profile.threshold("FT-FROZEN-006", "steps_500_minutes_max")
    peak_max_gib = hw_profile.threshold("FT-FROZEN-006", "peak_memory_gib_max")
    teacher_path, student_path = model_file("7b-teacher"), model_file("0.5b-student")

    config = train.DistillConfig(out_dir=tmp_path / "run", teacher=teacher_path, student=student_path,
                                 steps=steps + 1, batch=batch, seq=seq, device=str(device), student_dtype="bf16")
    lines: list[str] = []
    result = train.run_distillation(config, echo=lines.append)
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    records = [record for record in map(json.loads, log) if record.get("record") == "step"]
    warm = records[1:]  # step 0 pays for kernel selection and allocator warm-up
    step_time = statistics.mean(r["step_time_s"] for r in warm)
    peak_gib = max(r["cuda_peak_allocated_bytes"] for r in records) / GIB

    evidence("device", torch.cuda.get_device_name(device))
    evidence("start_line", lines[0] if lines else "")
    evidence("backend", result.decision.backend)
    evidence("tokens_per_step", batch * seq)
    evidence("step_time_s_mean", step_time, "s")
    evidence("step_time_s_max", max(r["step_time_s"] for r in warm), "s")
    evidence("steps_500_minutes", 500 * step_time / 60, "min")
    evidence("peak_memory_gib", peak_gib, "GiB")
    evidence("loss_first", result.losses[0])
    evidence("loss_last", result.losses[-1])
    assert result.status == "completed" and all(math.isfinite(loss) for loss in result.losses)
    assert step_time <= step_max, f"mean step {step_time:.3f} s > {step_max} s"
    assert 500 * step_time / 60 <= run_max_minutes
    assert peak_gib <= peak_max_gib, f"peak {peak_gib:.1f} GiB > {peak_max_gib} GiB"

"""Falsifiers of distill-training-v1's option limits (FT-TRAIN-012): every option of a run outside its
documented range is refused by name before anything is written, and the range's own ends are accepted.

The limits are spelled here as the contract states them (DTRAIN-INV-012), not read from the code:
counts from 1 to 2**31 - 1, seeds from 0 to 2**62, a temperature in (0, 1000], a learning rate in
(0, the largest float32].
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from distill.errors import DistillError
from distill.train import DistillConfig, check_config

CONFIG = ["distill.train:check_config", "distill.train:MAX_COUNT", "distill.train:MAX_SEED",
          "distill.train:MAX_LR", "distill.train:MAX_TEMPERATURE", "distill.train:STUDENT_DTYPES",
          "distill.train:AMP_DTYPES", "distill.schedule:SCHEDULES", "distill.export:check_student_format",
          "distill.export:STUDENT_FORMATS"]
COUNT_MAX, SEED_MAX, F32_MAX = 2**31 - 1, 2**62, 3.4028234663852886e38
#: option -> (values accepted, values refused); the options a data file must come with are given one
LIMITS: dict[str, tuple[list[Any], list[Any]]] = {
    **{name: ([1, COUNT_MAX], [0, -1, COUNT_MAX + 1, True, 2.0, "3"])
       for name in ("steps", "batch", "seq", "grad_accum", "keep")},
    "checkpoint_every": ([None, 1, COUNT_MAX], [0, COUNT_MAX + 1, True, 1.0]),
    "eval_every": ([None, 1, COUNT_MAX], [0, COUNT_MAX + 1, False]),
    "seed": ([0, SEED_MAX], [-1, SEED_MAX + 1, True, 0.0]),
    "holdout": ([None, 1e-9, 0.5, 1 - 1e-9], [0, 1, 0.0, 1.5, -0.5, True]),
    "warmup_steps": ([0, COUNT_MAX], [-1, COUNT_MAX + 1, True]),
    "log_every": ([0, COUNT_MAX], [-1, COUNT_MAX + 1, False]),
    "amp": ([None, "bf16"], ["fp16", "f32", ""]),
    "lr_schedule": (["constant", "cosine"], ["linear", "Cosine", ""]),
    "max_grad_norm": ([None, 1e-30, 1, 1e30], [0, -1.0, math.inf, math.nan, True]),
    "temperature": ([1e-30, 1000.0, 1000], [0, -1.0, 1000.0001, math.inf, math.nan]),
    "lr": ([1e-30, F32_MAX], [0, -1e-3, F32_MAX * (1 + 2**-23), math.inf, math.nan]),
    "student_dtype": (["f32", "bf16"], ["f16", "fp32", ""]),
    "student_format": (["bf16", "f16", "f32", "q4_k_m"], ["q8_0", "Q4_K_M", ""]),
}


def _base(tmp_path: Path) -> DistillConfig:
    return DistillConfig(out_dir=tmp_path / "run", teacher=Path("teacher.gguf"), student=Path("student.gguf"),
                         data=Path("tokens.bin"))


@pytest.mark.falsifies("FT-TRAIN-012", covers=CONFIG, mutants=["config-counts-unbounded", "config-lr-unbounded"])
def test_each_option_is_refused_outside_its_range_by_name_and_accepted_at_its_ends(tmp_path: Path) -> None:
    base = _base(tmp_path)
    assert check_config(base) == torch.device("cpu")
    for name, (accepted, refused) in LIMITS.items():
        for value in accepted:
            assert check_config(dataclasses.replace(base, **{name: value})) == torch.device("cpu"), (name, value)
        for value in refused:
            with pytest.raises(DistillError) as caught:
                check_config(dataclasses.replace(base, **{name: value}))
            shown = name.replace("_", " ") if name.startswith("student_") else name
            assert shown in str(caught.value) and repr(value) in str(caught.value), (name, value, caught.value)
    assert not (tmp_path / "run").exists(), "a refused run wrote its folder"


@pytest.mark.falsifies("FT-TRAIN-012", covers=CONFIG, mutants=["config-models-not-paired"])
def test_models_come_as_a_pair_or_a_preset_and_held_out_rows_need_data(tmp_path: Path) -> None:
    base = _base(tmp_path)
    for models in ({"student": None}, {"teacher": None}, {"teacher": None, "student": None},
                   {"preset_pair": "tiny"}):
        with pytest.raises(DistillError, match="either both a teacher and a student GGUF file, or a preset pair"):
            check_config(dataclasses.replace(base, **models))
    assert check_config(dataclasses.replace(base, teacher=None, student=None, preset_pair="tiny")).type == "cpu"
    for held in ({"eval_every": 5}, {"holdout": 0.2}):
        with pytest.raises(DistillError, match="eval_every and holdout need a data file"):
            check_config(dataclasses.replace(base, data=None, **held))
    assert check_config(dataclasses.replace(base, data=None)).type == "cpu"


@pytest.mark.falsifies("FT-TRAIN-012", covers=CONFIG, mutants=["config-any-device"])
def test_a_device_other_than_cpu_or_an_available_cuda_is_refused_by_name(tmp_path: Path) -> None:
    base = _base(tmp_path)
    refused = ["tpu", "meta", "cpu:x"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"])
    refused.append(f"cuda:{torch.cuda.device_count()}")
    for device in refused:
        with pytest.raises(DistillError, match=f"device {device!r}"):
            check_config(dataclasses.replace(base, device=device))

"""Smoke tests of the shared measurement helpers and of ``bench/hardware.py`` at a tiny size on CPU."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, report  # noqa: E402

CPU = torch.device("cpu")
MIB = 1 << 20


def test_hardware_main_writes_ceilings_computed_from_its_timings(tmp_path: Path) -> None:
    assert hardware.main(["--device", "cpu", "--copy-mib", "1", "--matmul-n", "64", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "hardware-cpu.json").read_text())
    assert data["device"]["type"] == "cpu" and data["device"]["date"]
    assert set(data["device"]["source"]) == {"commit", "dirty"}
    copy, matmul = data["ceilings"]["copy_bandwidth"], data["ceilings"]["matmul_rate"]
    assert copy["amount"] == 2 * MIB  # bytes read + bytes written
    assert copy["per_s"] == pytest.approx(copy["amount"] / copy["timing"]["median_s"])
    assert matmul["amount"] == 2 * 64**3
    assert matmul["per_s"] == pytest.approx(matmul["amount"] / matmul["timing"]["median_s"])


def test_bad_device_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hardware.main(["--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_time_fn_reports_the_median_of_the_timed_runs() -> None:
    delays = iter([0.0, 0.001, 0.03, 0.001])  # one warm-up, then three timed runs

    timing = hardware.time_fn(lambda: time.sleep(next(delays)), CPU, warmup=1, repeats=3)
    assert timing.repeats == 3
    assert 0.001 <= timing.median_s < 0.02 <= timing.max_s


def test_peak_extra_counts_what_is_live_at_once_not_what_was_allocated_in_total() -> None:
    def two_buffers_one_after_the_other() -> torch.Tensor:
        first = torch.ones(MIB, dtype=torch.float32)  # 4 MiB
        del first
        return torch.ones(MIB, dtype=torch.float32)  # 4 MiB, kept

    def two_buffers_at_once() -> torch.Tensor:
        first = torch.ones(MIB, dtype=torch.float32)
        return torch.cat([first, torch.ones(MIB, dtype=torch.float32)])  # 4 + 4 + 8 MiB live at the end

    _, sequential, method = hardware.peak_extra_bytes(two_buffers_one_after_the_other, CPU)
    _, overlapping, _ = hardware.peak_extra_bytes(two_buffers_at_once, CPU)
    assert "profiler" in method
    assert 4 * MIB <= sequential < 5 * MIB
    assert 16 * MIB <= overlapping < 17 * MIB


def test_storage_bytes_counts_a_shared_storage_once() -> None:
    base = torch.zeros(1000, dtype=torch.float32)
    other = torch.zeros(10, dtype=torch.float64)
    assert hardware.storage_bytes([base, base[10:], base.view(10, 100), other]) == 4000 + 80
    module = torch.nn.Linear(10, 20)
    assert hardware.module_storage_bytes(module) == (10 * 20 + 20) * 4


def test_targets_are_never_met_without_a_measurement() -> None:
    assert report.target("t", 1.5, 2.0, "<=")["met"] is True
    assert report.target("t", 2.5, 2.0, "<=")["met"] is False
    assert report.target("t", 0.7, 0.7, ">=")["met"] is True
    missing = report.target("t", None, 2.0, "<=", missing="needs CUDA")
    assert missing["met"] is None and missing["status"] == "not measured"
    assert missing["why_not_measured"] == "needs CUDA"


def test_json_is_written_whole_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    path = report.write_json(tmp_path, "x", {"loss": float("nan"), "steps": [1.0, float("inf")], "ok": 2.5})
    assert json.loads(path.read_text()) == {"loss": None, "steps": [1.0, None], "ok": 2.5}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_an_output_folder_under_a_file_is_a_bench_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sub"

    def measure() -> dict:
        return {"path": str(report.write_json(out, "x", {}))}

    assert report.run_main(measure) == 2
    err = capsys.readouterr().err
    assert f"bench: error: --out {out}: cannot write there" in err and "Traceback" not in err

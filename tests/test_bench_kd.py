"""Smoke test of ``bench/kd.py`` at a tiny size on CPU: the JSON it writes and the ratios in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import kd  # noqa: E402

TINY = ["--device", "cpu", "--rows", "8", "--vocab", "512", "--repeats", "1", "--warmup", "0", "--copy-mib", "1"]


def test_kd_bench_json_has_every_side_and_ratios_to_the_measured_roofline(tmp_path: Path) -> None:
    assert kd.main([*TINY, "--dtypes", "f32", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "kd-cpu.json").read_text())
    assert data["benchmark"] == "kd" and data["device"]["type"] == "cpu" and data["device"]["date"]
    bandwidth = data["ceilings"]["copy_bandwidth"]["per_s"]
    (case,) = data["cases"]
    assert case["dtype"] == "f32" and case["logits_bytes"] == 8 * 512 * 4
    assert case["roofline_bytes"] == 5 * case["logits_bytes"]
    assert case["roofline_s"] == pytest.approx(case["roofline_bytes"] / bandwidth)
    impls = {impl["name"]: impl for impl in case["implementations"]}
    assert set(impls) == set(kd.IMPLEMENTATIONS)
    ours, torch_ = impls["kd_loss"], impls["torch"]
    for impl in (ours, torch_):
        assert impl["status"] == "measured"
        median = impl["timing"]["median_s"]
        assert impl["ratio_to_roofline"] == pytest.approx(median / case["roofline_s"])
        assert impl["peak_extra_vs_logits"] == pytest.approx(impl["peak_extra_bytes"] / case["logits_bytes"])
        # the gradient dS alone is one logits tensor: a peak below that was not measured
        assert impl["peak_extra_bytes"] >= case["logits_bytes"]
    assert torch_["time_vs_kd_loss"] == pytest.approx(torch_["timing"]["median_s"] / ours["timing"]["median_s"])
    assert torch_["grad_rel_diff_vs_torch"] == 0.0
    assert ours["grad_rel_diff_vs_torch"] < 1e-5 and ours["loss_rel_diff_vs_torch"] < 1e-5
    for name in ("liger-kldiv", "liger-jsd"):  # no GPU here: never a made-up figure
        assert impls[name]["status"] == "not available" and "timing" not in impls[name]
        assert "not installed" in impls[name]["reason"] or "needs CUDA" in impls[name]["reason"]
    targets = {t["target"]: t for t in case["targets"]}
    assert targets["kd_loss time / two-pass roofline"]["measured"] == ours["ratio_to_roofline"]
    assert targets["kd_loss time / fastest Liger time"]["met"] is None
    assert targets["kd_loss peak extra / one logits tensor"]["measured"] == ours["peak_extra_vs_logits"]
    agreement = targets["kd_loss gradient vs plain PyTorch (relative)"]
    assert agreement["measured"] == ours["grad_rel_diff_vs_torch"] and agreement["met"] is True


def test_kd_bench_refuses_an_unknown_implementation_without_writing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert kd.main([*TINY, "--impls", "kd_loss,fused", "--out", str(tmp_path)]) == 2
    assert "fused" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_side_that_fails_is_recorded_and_the_run_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(temperature: float):
        def loss(student, teacher):
            raise RuntimeError("CUDA out of memory. Tried to allocate 4.64 GiB\nmore detail")

        return loss

    monkeypatch.setitem(kd.IMPLEMENTATIONS, "broken", broken)
    assert kd.main([*TINY, "--dtypes", "f32", "--impls", "kd_loss,broken", "--out", str(tmp_path)]) == 1
    (case,) = json.loads((tmp_path / "kd-cpu.json").read_text())["cases"]
    impls = {impl["name"]: impl for impl in case["implementations"]}
    assert impls["kd_loss"]["status"] == "measured"
    assert impls["broken"] == {"name": "broken", "status": "failed",
                               "reason": "RuntimeError: CUDA out of memory. Tried to allocate 4.64 GiB"}

"""Smoke test of ``bench/teacher.py`` on a tiny Q4_K teacher on CPU: the JSON and the ratios in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import teacher  # noqa: E402

TINY = ["--device", "cpu", "--teacher-preset", "tiny", "--teacher-layers", "1", "--teacher-vocab", "256",
        "--batch", "1", "--seq", "8", "--repeats", "1",
        "--warmup", "0", "--dequant-repeats", "1", "--copy-mib", "1", "--matmul-n", "64", "--sample-rows", "2"]


@pytest.fixture
def fast_synth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random valid Q4_K blocks for every matrix (as for a 7B) instead of running the quantizer: seconds saved."""
    monkeypatch.setattr("distill.synth.QUANTIZE_MAX_ELEMENTS", 0)


def test_teacher_bench_json_has_both_backends_and_ratios_to_the_measured_ceilings(tmp_path: Path, fast_synth: None) -> None:
    assert teacher.main([*TINY, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "teacher-cpu.json").read_text())
    assert data["benchmark"] == "teacher" and data["device"]["type"] == "cpu" and data["device"]["date"]
    assert data["teacher_shape"]["preset"] == "tiny"
    matmul = data["ceilings"]["matmul_rate"]["per_s"]
    floor = data["compute_floor"]
    assert floor["seconds"] == pytest.approx(floor["total"] / matmul)
    assert floor["total"] == pytest.approx(floor["matmul"] + floor["attention"]) and floor["matmul"] > 0
    backends = data["backends"]
    assert set(backends) == {"dequant", "q4k-native"}
    for name, result in backends.items():
        assert result["backend"] == name
        median = result["timing"]["median_s"]
        assert result["ms_per_forward"] == pytest.approx(median * 1e3)
        assert result["ratio_to_compute_floor"] == pytest.approx(median / floor["seconds"])
    # the quantized blocks are far smaller than the same weights in f32
    assert backends["q4k-native"]["resident_bytes"] < backends["dequant"]["resident_bytes"] / 2
    assert data["q4k_native_over_dequant_time"] == pytest.approx(
        backends["q4k-native"]["timing"]["median_s"] / backends["dequant"]["timing"]["median_s"])
    assert data["backend_logits_agreement"]["cosine"] > 0.999
    dequant = data["dequantization"]
    moved = dequant["bytes_read"] + dequant["bytes_written"]
    assert dequant["bytes_per_s"] == pytest.approx(moved / dequant["timing"]["median_s"])
    assert dequant["fraction_of_copy_bandwidth"] == pytest.approx(
        dequant["bytes_per_s"] / data["ceilings"]["copy_bandwidth"]["per_s"])
    assert dequant["bit_exact"]["elements_checked"] > 0 and dequant["bit_exact"]["mismatches"] == 0
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["dequant forward / compute floor"]["measured"] == backends["dequant"]["ratio_to_compute_floor"]
    assert targets["dequantization mismatches vs gguf (bits)"]["met"] is True
    assert targets["q4k-native vs dequant logits cosine"]["measured"] == data["backend_logits_agreement"]["cosine"]


def test_teacher_bench_refuses_an_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert teacher.main([*TINY, "--teacher-preset", "qwen9", "--out", str(tmp_path)]) == 2
    assert "qwen9" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bit_exact_sample_counts_a_one_ulp_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from distill import quant

    weights = torch.randn(4, 512, generator=torch.Generator().manual_seed(1))
    tensor = quant.TensorData("blk.0.ffn_up.weight", "Q4_K", (4, 512), quant.quantize(weights, "Q4_K"))
    assert teacher.bit_exact_sample([tensor], rows=4)["mismatches"] == 0
    exact = quant.dequantize
    monkeypatch.setattr(quant, "dequantize", lambda raw, qtype: torch.nextafter(exact(raw, qtype), torch.tensor(1e9)))
    sample = teacher.bit_exact_sample([tensor], rows=4)
    assert sample["mismatches"] == sample["elements_checked"] == 4 * 512

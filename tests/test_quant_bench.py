"""bench/dequant.py runs end to end on a small matrix and reports bit-exactness and ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import dequant  # noqa: E402


def test_small_run_writes_the_report(tmp_path: Path, capsys) -> None:
    assert dequant.main(["--device", "cpu", "--rows", "16", "--cols", "512", "--repeats", "1", "--warmup", "0",
                         "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "dequant-cpu.json").read_text())
    assert [c["qtype"] for c in payload["cases"]] == ["Q4_K", "Q6_K"]
    for case in payload["cases"]:
        assert case["bit_exact"] is True and case["bit_exact_rows"] == 16
        assert case["weights"] == 16 * 512 and case["speedup_vs_gguf"] > 0
        assert case["target"]["status"] in ("met", "missed")
    assert "x gguf" in capsys.readouterr().out


def test_bad_arguments_are_one_line(tmp_path: Path, capsys) -> None:
    assert dequant.main(["--device", "cpu", "--cols", "300", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "bench: error: --cols 300: must be a multiple of 256 (whole Q4_K/Q6_K blocks)"
    assert dequant.main(["--device", "cpu", "--qtypes", "Q5_K", "--out", str(tmp_path)]) == 2
    assert "--qtypes: ['Q5_K']; choose from Q4_K, Q6_K" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

"""What every benchmark shares besides measuring: arguments, targets, the table, the JSON file.

A benchmark's ``main(argv)`` parses its arguments and hands a function that
measures and returns its JSON payload to ``run_main``, which turns a bad
argument into one line on stderr and exit status 2, and a measurement that
failed after its JSON was written (``BenchFailed``) into exit status 1; never
a traceback. In the JSON, a non-finite number is written as null.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

#: Where the JSON files go unless ``--out`` says otherwise (relative to the repository).
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reports" / "bench"

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


class BenchError(Exception):
    """A bad argument or an impossible request: reported as one line, exit status 2."""


class BenchFailed(Exception):
    """Something measured failed (the JSON says what): reported as one line, exit status 1."""


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise BenchError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder of the JSON result (default {DEFAULT_OUT})")


def add_timing_arguments(parser: argparse.ArgumentParser, *, repeats: int, warmup: int) -> None:
    parser.add_argument("--repeats", type=positive_int, default=repeats, help=f"timed runs, median reported (default {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs first (default {warmup})")


def run_main(measure: Callable[[], dict[str, Any]]) -> int:
    """Run a benchmark; a BenchError becomes ``bench: error: ...`` on stderr and exit status 2."""
    from distill.errors import DistillError

    try:
        measure()
    except (BenchError, DistillError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except BenchFailed as exc:
        print(f"bench: failed: {exc}", file=sys.stderr)
        return 1
    return 0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def target(name: str, measured: float | None, limit: float, comparison: str, *, unit: str = "",
           missing: str | None = None) -> dict[str, Any]:
    """A target and whether the measured value meets it (``<=`` or ``>=`` the limit).

    ``met`` is None when nothing was measured (``missing`` says why): never a pass.
    """
    if comparison not in ("<=", ">="):
        raise ValueError(f"comparison must be <= or >=, got {comparison!r}")
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        met = None
    else:
        met = measured <= limit if comparison == "<=" else measured >= limit
    return {"target": name, "measured": measured, "comparison": comparison, "limit": limit, "unit": unit,
            "met": met, "status": {True: "met", False: "missed", None: "not measured"}[met],
            **({"why_not_measured": missing} if met is None and missing else {})}


def format_targets(targets: Sequence[dict[str, Any]]) -> str:
    rows = [[t["target"], _fmt(t["measured"]) + (f" {t['unit']}" if t["unit"] and t["measured"] is not None else ""),
             f"{t['comparison']} {_fmt(t['limit'])}", t["status"] + (f" ({t['why_not_measured']})" if t.get("why_not_measured") else "")]
            for t in targets]
    return format_table(["target", "measured", "limit", "status"], rows)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(out_dir: Path, stem: str, payload: dict[str, Any]) -> Path:
    """Write ``out_dir/stem.json`` atomically (temp file, then rename); return its path.

    An OS error (``--out`` under a file, no permission) is a :class:`BenchError` naming the folder.
    """
    out_dir = Path(out_dir)
    path = out_dir / f"{stem}.json"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=out_dir)
    except OSError as exc:
        raise BenchError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_finite(payload), handle, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

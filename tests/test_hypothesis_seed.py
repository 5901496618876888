"""Hypothesis examples come from a seed derived from the obligation id: each obligation draws its
own, and the same ones under any install of pv (editable, or a copy without source files) and any
``PYTHONHASHSEED``."""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pv

DRAW = r"""
import json, sys
from pv.checks.evaluation import Property
drawn = []
evaluate = Property.evaluate
def spy(self, inputs):
    drawn.append(dict(inputs))
    return evaluate(self, inputs)
Property.evaluate = spy
from pv.checks.compiling import CheckUnit, compile_unit, run_check
import pv
check = {"given": {"x": {"int": {}}, "ys": {"list": {"of": "int", "max_len": 4}}}, "expect": "x == x",
         "engine": "hypothesis", "budget": {"examples": 30}}
unit = CheckUnit(contract=sys.argv[1], obligation=sys.argv[2], path="any.yaml", line=1, check=check)
verdict = run_check(compile_unit(unit), "hypothesis")
print(json.dumps({"pv": pv.__file__, "status": verdict.status.value, "drawn": drawn}))
"""


def _draw(contract: str, obligation: str, hash_seed: str, pythonpath: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, "-c", DRAW, contract, obligation], env=env,
                          capture_output=True, text=True, check=True, cwd=Path(pv.__file__).parents[2])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sourceless_copy(tmp_path: Path) -> Path:
    """pv as an install that ships only byte code: Hypothesis cannot read its test function's source."""
    site = tmp_path / "site"
    shutil.copytree(Path(pv.__file__).parent, site / "pv", ignore=shutil.ignore_patterns("__pycache__"))
    assert compileall.compile_dir(site / "pv", legacy=True, quiet=1)
    for source in (site / "pv").rglob("*.py"):
        source.unlink()
    return site


def test_the_same_examples_under_another_install_and_hash_seed(tmp_path: Path) -> None:
    editable = _draw("seed-v1", "SEED-001", "0")
    copied = _draw("seed-v1", "SEED-001", "12345", _sourceless_copy(tmp_path))
    assert Path(copied["pv"]).is_relative_to(tmp_path) and not Path(editable["pv"]).is_relative_to(tmp_path)
    assert editable["status"] == copied["status"] == "passed"
    assert len(editable["drawn"]) >= 30
    assert copied["drawn"] == editable["drawn"]


def test_each_obligation_draws_its_own_examples() -> None:
    first = _draw("seed-v1", "SEED-001", "0")["drawn"]
    other = _draw("seed-v1", "SEED-002", "0")["drawn"]
    assert first != other

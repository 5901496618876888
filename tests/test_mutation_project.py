"""pv mutate in a project as a user has it: pv installed as a package (the console script does not put the
working directory on sys.path), the project's unit tests in the selection by [tool.pv] mutation_tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mutation_projects import CALC, WEAK_TESTS


def test_a_project_run_finds_its_module_and_kills_with_its_unit_tests(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "contracts").mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_unit.py").write_text(WEAK_TESTS)
    (root / "contracts" / "calc.yaml").write_text("equations:\n  clamp:\n    implementation: calc:clamp\n")
    (root / "pyproject.toml").write_text('[tool.pv]\nmutation_tests = ["tests"]\n')
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PV_ROOT")}
    # -P: the working directory is not on sys.path, as for the console script of an installed pv
    proc = subprocess.run([sys.executable, "-P", "-m", "pv", "mutate", "--format", "json", "-o", "report.json"],
                          cwd=root, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((root / "report.json").read_text())
    assert {m["killed_by"] for m in data["mutants"] if m["status"] == "killed"} == {
        "tests/test_unit.py::test_below", "tests/test_unit.py::test_inside"}
    assert "tests/test_unit.py" in data["inputs"]["files"] and "pyproject.toml" in data["inputs"]["files"]

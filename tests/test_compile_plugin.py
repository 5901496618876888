"""The pytest plugin: contract obligations x engines as items, selection, xdist, JUnit and verdicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from compiler_data.pvc_units import DATA_DIR

TESTS_DIR = DATA_DIR.parent
PLUGIN_CONTRACT = DATA_DIR / "pvc-plugin-v1.yaml"


def run_pytest(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """pytest in a subprocess with a JUnit report; returns the process and node name -> case info."""
    junit = cwd / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
               "--pv-allow-module", "compiler_data", f"--junitxml={junit}", *args]
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    cases = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "skipped", "error")), "passed")
        properties = {p.get("name"): json.loads(p.get("value")) for p in case.iter("property")}
        cases[f"{case.get('classname')}::{case.get('name')}"] = {"outcome": outcome, **properties}
    return process, cases


def test_contracts_folder_is_collected_per_obligation_and_engine_under_xdist(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.pv]\ncontracts = "contracts"\n')
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    shutil.copy(PLUGIN_CONTRACT, contracts / "pvc-plugin.yaml")
    (contracts / "broken.yaml").write_text("proof_obligations: [\n")
    (tmp_path / "profiles").mkdir()
    shutil.copy(PLUGIN_CONTRACT, tmp_path / "profiles" / "not-below-contracts.yaml")
    (contracts / "profile.yaml").write_text("name: cpu\nthresholds: {}\n")

    process, cases = run_pytest(["-n", "2", "."], tmp_path)

    assert process.returncode == 1, process.stdout + process.stderr
    outcomes = {name: case["outcome"] for name, case in cases.items()}
    assert outcomes == {
        "contracts.pvc-plugin.yaml::PVC-P-001[exhaustive]": "passed",
        "contracts.pvc-plugin.yaml::PVC-P-002[hypothesis]": "passed",
        "contracts.pvc-plugin.yaml::PVC-P-002[crosshair]": "passed",
        "contracts.pvc-plugin.yaml::PVC-P-003[exhaustive]": "failure",
        "contracts.pvc-plugin.yaml::PVC-P-004[unchecked]": "skipped",
        "contracts.broken.yaml::load": "failure",
    }
    verdicts = {name: case["pv_verdict"] for name, case in cases.items() if "pv_verdict" in case}
    assert {name: v["status"] for name, v in verdicts.items()} == {
        "contracts.pvc-plugin.yaml::PVC-P-001[exhaustive]": "proved",
        "contracts.pvc-plugin.yaml::PVC-P-002[hypothesis]": "passed",
        "contracts.pvc-plugin.yaml::PVC-P-002[crosshair]": "proved",
        "contracts.pvc-plugin.yaml::PVC-P-003[exhaustive]": "refuted",
        "contracts.pvc-plugin.yaml::PVC-P-004[unchecked]": "unchecked",
    }
    refuted = verdicts["contracts.pvc-plugin.yaml::PVC-P-003[exhaustive]"]
    assert refuted["counterexample"]["inputs"] == {"l": [0, 1], "N": 1, "K": 1}
    assert "counterexample" in process.stdout and "unchecked: the obligation has no executable check" in process.stdout


def test_a_contract_named_on_the_command_line_is_collected_and_k_selects(tmp_path):
    process, cases = run_pytest([str(PLUGIN_CONTRACT), "-k", "PVC-P-002 and crosshair"], tmp_path)
    assert process.returncode == 0, process.stdout + process.stderr
    assert [(name.rsplit("::", 1)[1], case["outcome"]) for name, case in cases.items()] == [
        ("PVC-P-002[crosshair]", "passed")
    ]
    assert "4 deselected" in process.stdout


def test_yaml_that_is_not_a_contract_yields_no_items(tmp_path):
    (tmp_path / "profile.yaml").write_text("name: cpu\ndevice_class: cpu\n")
    process, cases = run_pytest([str(tmp_path / "profile.yaml")], tmp_path)
    assert cases == {}
    assert process.returncode == 5  # pytest: no tests collected, never a pass

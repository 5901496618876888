"""`pv check` and `pv compile`: verdict table, exit codes, replay, generated modules."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import yaml

from compiler_data.pvc_units import DATA_DIR

from pv.cli import main

PLUGIN_CONTRACT = str(DATA_DIR / "pvc-plugin-v1.yaml")
ALLOW = ["--allow-module", "compiler_data"]


def test_check_prints_a_verdict_per_obligation_and_engine_and_fails_on_a_refutation(capsys):
    assert main(["check", PLUGIN_CONTRACT, *ALLOW]) == 1
    out = capsys.readouterr().out
    rows = [line.split()[:3] for line in out.splitlines()[:5]]
    assert rows == [
        ["pvc-plugin-v1::PVC-P-001", "exhaustive", "proved"],
        ["pvc-plugin-v1::PVC-P-002", "hypothesis", "passed"],
        ["pvc-plugin-v1::PVC-P-002", "crosshair", "proved"],
        ["pvc-plugin-v1::PVC-P-003", "exhaustive", "refuted"],
        ["pvc-plugin-v1::PVC-P-004", "none", "unchecked"],
    ]
    assert 'counterexample: {"failure": "expect is false", "inputs": {"K": 1, "N": 1, "l": [0, 1]}' in out


def test_check_passes_when_every_selected_verdict_is_proved_or_passed(capsys):
    assert main(["check", PLUGIN_CONTRACT, *ALLOW, "--obligation", "PVC-P-001", "--obligation", "PVC-P-004"]) == 0
    assert main(["check", PLUGIN_CONTRACT, *ALLOW, "--obligation", "PVC-P-004", "--require-checks"]) == 1


def test_replay_judges_one_input(capsys):
    failing = ["check", PLUGIN_CONTRACT, *ALLOW, "--obligation", "PVC-P-003"]
    assert main([*failing, "--replay", '{"l": [0, 1], "N": 1, "K": 1}']) == 1
    assert main([*failing, "--replay", '{"l": [1, 0], "N": 1, "K": 1}']) == 0
    assert "replay" in capsys.readouterr().out


def test_json_output_carries_the_verdicts(capsys):
    assert main(["check", PLUGIN_CONTRACT, *ALLOW, "--obligation", "PVC-P-003", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (verdict,) = report["verdicts"]
    assert verdict["status"] == "refuted" and verdict["counterexample"]["inputs"]["l"] == [0, 1]


def test_bindings_outside_the_allowed_modules_are_an_error_verdict(capsys):
    assert main(["check", PLUGIN_CONTRACT, "--obligation", "PVC-P-001"]) == 1
    assert "outside the allowed modules" in capsys.readouterr().out


def test_a_contract_that_cannot_be_loaded_fails_the_run(tmp_path, capsys):
    shutil.copy(PLUGIN_CONTRACT, tmp_path)
    (tmp_path / "broken.yaml").write_text("proof_obligations: [\n")
    assert main(["check", str(tmp_path), *ALLOW, "--obligation", "PVC-P-001"]) == 1
    assert "cannot load" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "broken.yaml"), *ALLOW]) == 1
    err = capsys.readouterr().err
    assert "cannot load" in err and "Traceback" not in err


def test_bad_arguments_are_one_message_and_exit_2(tmp_path, capsys):
    not_contract = tmp_path / "profile.yaml"
    not_contract.write_text("name: cpu\n")
    for args, message in [
        (["check", str(tmp_path / "missing.yaml")], "no such file"),
        (["check", str(not_contract)], "no contracts"),
        (["check", PLUGIN_CONTRACT, "--obligation", "NOPE-1"], "no obligation NOPE-1"),
        (["check", PLUGIN_CONTRACT, "--replay", "{not json"], "--replay: not JSON"),
        (["check", PLUGIN_CONTRACT, "--replay", "{}"], "exactly one obligation"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_compile_writes_deterministic_modules_that_run_the_same_checks(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["compile", PLUGIN_CONTRACT, "-o", str(first)]) == 0
    assert main(["compile", PLUGIN_CONTRACT, "-o", str(second)]) == 0
    (module,) = first.iterdir()
    assert module.name == "test_pvc_pvc_plugin_v1.py"
    assert module.read_bytes() == (second / module.name).read_bytes()
    text = module.read_text()
    assert "#   expect  set(topk_indices(l[:N], K)) == {i for i in topk_indices(l, K) if i < N}" in text

    env = {**os.environ, "PYTHONPATH": str(DATA_DIR.parent)}
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--pv-allow-module", "compiler_data",
         str(module)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert "1 failed, 3 passed, 1 skipped" in process.stdout
    assert "test_PVC_P_003[exhaustive]" in process.stdout and '"l": [0, 1]' in process.stdout


def test_compile_writes_nothing_when_a_check_is_invalid(tmp_path, capsys):
    contracts = tmp_path / "in"
    contracts.mkdir()
    shutil.copy(PLUGIN_CONTRACT, contracts)
    shutil.copy(DATA_DIR / "pvc-injection-v1.yaml", contracts)
    out = tmp_path / "out"
    assert main(["compile", str(contracts), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "PVC-INJ-001" in err and "__import__" in err
    assert not out.exists()
    (tmp_path / "file").write_text("")
    assert main(["compile", PLUGIN_CONTRACT, "-o", str(tmp_path / "file")]) == 2


def test_compile_into_an_unusable_folder_is_one_message_and_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["compile", PLUGIN_CONTRACT, "-o", str(tmp_path / "file" / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err


def test_compile_keeps_contract_text_out_of_the_code(tmp_path, capsys):
    data = yaml.safe_load(open(PLUGIN_CONTRACT, encoding="utf-8"))
    data["proof_obligations"][0]["property"] = "first line\nraise SystemExit('contract text ran')\n#"
    contract = tmp_path / 'quote"""and\\backslash.yaml'
    contract.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert main(["compile", str(contract), "-o", str(tmp_path / "out")]) == 0
    (module,) = (tmp_path / "out").iterdir()
    tree = ast.parse(module.read_text(encoding="utf-8"))  # the quoted file name still parses
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Raise)], \
        "a line of the contract's property became code"

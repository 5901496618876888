"""`pv validate` from the command line: exit codes, the three formats, --strict, atomic -o."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pv.cli import main
from test_rules_each import BASE, edit

BROKEN = edit("qa_gate:\n", "qa_gates:\n")
WARNED = edit("- id: T-INV-001\n  type: invariant\n", "- type: invariant\n").replace("  obligation: T-INV-001\n", "  obligation: T-INV-009\n")
ONLY_WARNING = edit("- id: T-INV-001\n  type: invariant\n", "- type: invariant\n").replace(
    "kani_harnesses:\n- id: KANI-T-001\n  obligation: T-INV-001\n  bound: 4\n  strategy: bounded_int\n", "")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_folder_exits_0(tmp_path: Path, capsys) -> None:
    write(tmp_path, "t-v1.yaml", BASE)
    code, out, err = run(capsys, tmp_path)
    assert (code, out) == (0, "")
    assert "1 files: 0 errors, 0 warnings" in err


def test_error_exits_1_with_text_lines(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "t-v1.yaml", BROKEN)
    code, out, _ = run(capsys, path)
    assert code == 1
    assert out == f"{path}:23:1: error PV-SCHEMA-001 unknown key `qa_gates` in the top level; did you mean `qa_gate`?\n"


def test_warning_alone_exits_0_and_strict_makes_it_an_error(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "t-v1.yaml", ONLY_WARNING)
    code, out, _ = run(capsys, path)
    assert code == 0 and ": warning PV-ID-004 " in out
    code, out, _ = run(capsys, "--strict", path)
    assert code == 1 and ": error PV-ID-004 " in out


def test_unreadable_input_exits_2(tmp_path: Path, capsys) -> None:
    write(tmp_path, "t-v1.yaml", BASE)
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01")
    code, out, _ = run(capsys, tmp_path)
    assert code == 2 and "PV-LOAD-003" in out


def test_malformed_yaml_exits_1_and_other_files_are_still_checked(tmp_path: Path, capsys) -> None:
    write(tmp_path, "a-v1.yaml", "metadata: [\n")
    write(tmp_path, "b-v1.yaml", BROKEN)
    code, out, _ = run(capsys, tmp_path)
    assert code == 1
    assert [line.split(" ")[2] for line in out.splitlines()] == ["PV-YAML-001", "PV-SCHEMA-001"]


def test_missing_path_and_bad_option_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, tmp_path / "absent")
    assert code == 2 and "no such file or directory" in err
    assert main(["validate", "--format", "xml", str(tmp_path)]) == 2


def test_json_format(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "t-v1.yaml", WARNED)
    code, out, _ = run(capsys, "--format", "json", path)
    report = json.loads(out)
    assert code == 1
    assert (report["files"], report["errors"], report["warnings"]) == (1, 1, 1)
    assert [(f["rule"], f["severity"], f["line"]) for f in report["findings"]] == [
        ("PV-ID-004", "warning", 9), ("PV-REF-001", "error", 19)]


def test_sarif_format(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "t-v1.yaml", WARNED)
    code, out, _ = run(capsys, "--format", "sarif", "t-v1.yaml")
    log = json.loads(out)
    assert code == 1 and log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run_ = log["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert {"PV-SCHEMA-001", "PV-REF-001", "PV-YAML-001", "PV-LOAD-001"} <= set(ids)
    results = [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in run_["results"]]
    assert results == [("PV-ID-004", "warning", "t-v1.yaml", 9), ("PV-REF-001", "error", "t-v1.yaml", 19)]
    assert all(ids[r["ruleIndex"]] == r["ruleId"] for r in run_["results"])


def test_output_file_is_written_whole(tmp_path: Path, capsys) -> None:
    write(tmp_path, "t-v1.yaml", BROKEN)
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    code, out, _ = run(capsys, "--format", "json", "-o", report, tmp_path / "t-v1.yaml")
    assert code == 1 and out == ""
    assert json.loads(report.read_text())["errors"] == 1
    assert [p.name for p in report.parent.iterdir()] == ["report.json"]


def test_no_output_file_on_a_usage_error(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report.txt"
    report.write_text("previous report\n")
    code, _, _ = run(capsys, "-o", report, tmp_path / "absent.yaml")
    assert code == 2
    assert report.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


def test_output_into_a_missing_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:
    write(tmp_path, "t-v1.yaml", BASE)
    code, _, err = run(capsys, "-o", tmp_path / "nowhere" / "r.txt", tmp_path / "t-v1.yaml")
    assert code == 2 and "does not exist" in err


def test_installed_command_starts_without_torch(tmp_path: Path) -> None:
    write(tmp_path, "t-v1.yaml", BASE)
    code = "import sys; from pv.cli import main; rc = main(['validate', sys.argv[1]]); " \
           "assert 'torch' not in sys.modules and 'jsonschema' not in sys.modules, 'heavy import'; sys.exit(rc)"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_paths_without_any_contract_file_are_a_usage_error(tmp_path: Path, capsys) -> None:
    write(tmp_path, "notes.txt", "not a contract\n")
    code, out, err = run(capsys, tmp_path)
    assert code == 2 and out == ""
    assert f"pv validate: error: no contract files (*.yaml, *.yml) in {tmp_path}" in err


def test_an_over_long_metadata_version_is_an_error_not_a_string(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "c.yaml", BASE.replace("version: 1.0.0", "version: 0x" + "f" * 4000, 1))
    assert "0x" + "f" * 4000 in path.read_text(encoding="utf-8")
    code, out, _ = run(capsys, path)
    assert code == 1 and "PV-YAML-008" in out and "metadata.version" not in out

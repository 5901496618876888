"""File names that are not UTF-8 (bytes Python decodes with ``surrogateescape``): pv shows them
escaped (``\\udcff``) on a strict UTF-8 stdout and in its text files, keeps them exact in JSON,
and compiles a contract so named into a module that imports; never a UnicodeEncodeError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_rules_each import BASE

NAME = b"contract-\xff.yaml"
SHOWN = "contract-\\udcff.yaml"


def pv(cwd: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """``pv`` in a child whose stdout is strict UTF-8 (as under an en_US.UTF-8 locale)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUTF8": "0"}
    return subprocess.run([sys.executable, "-m", "pv", *args], cwd=cwd, env=env, capture_output=True)


def contract(folder: Path, text: str) -> None:
    (folder / os.fsdecode(NAME)).write_bytes(text.encode("utf-8"))


def test_a_contract_file_name_that_is_not_utf8_is_shown_and_written_back(tmp_path: Path) -> None:
    contract(tmp_path, BASE.replace("qa_gate:\n", "qa_gates:\n"))
    done = pv(tmp_path, "validate", ".", "-o", "findings.txt")
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert SHOWN.encode() in (tmp_path / "findings.txt").read_bytes()
    as_json = pv(tmp_path, "validate", ".", "--format", "json", "-o", "findings.json")
    assert as_json.returncode == 1 and b"Traceback" not in as_json.stderr
    paths = {finding["path"] for finding in json.loads((tmp_path / "findings.json").read_bytes())["findings"]}
    assert {os.fsencode(path) for path in paths} == {NAME}
    printed = pv(tmp_path, "validate", ".")
    assert printed.returncode == 1 and b"Traceback" not in printed.stderr
    assert SHOWN.encode() in printed.stdout


def test_a_contract_file_name_that_is_not_utf8_compiles_to_a_module_that_imports(tmp_path: Path) -> None:
    contract(tmp_path, BASE)
    done = pv(tmp_path, "compile", os.fsdecode(NAME), "-o", "generated")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    (module,) = (tmp_path / "generated").iterdir()
    text = module.read_bytes().decode("utf-8")
    assert SHOWN.replace("\\", "\\\\") in text
    compile(text, module.name, "exec")


def test_an_out_folder_that_is_not_utf8_is_printed_escaped(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "broken.yaml").write_text("metadata: [\n", encoding="utf-8")
    (tmp_path / "falsifiers").mkdir()
    done = pv(tmp_path, "verify", "--contracts", "contracts", "--falsifiers", "falsifiers",
              "--out", os.fsdecode(b"out-\xff"), "--profile", "cpu")
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and b"out-\\udcff" in done.stdout


def test_the_writer_writes_a_file_names_bytes_back_and_escapes_other_lone_surrogates(tmp_path: Path) -> None:
    from pv._util.files import write_atomic

    write_atomic(tmp_path / "out.txt", f"{os.fsdecode(NAME)} and \ud800\n")
    assert (tmp_path / "out.txt").read_bytes() == NAME + b" and \\ud800\n"

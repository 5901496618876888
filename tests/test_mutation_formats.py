"""pv mutate's reports: every input by digest, the shared format (validated against its schema), one HTML
page and the text table with survivors' diffs, --show, and -o refused onto a file the run reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from html import escape
from pathlib import Path

import jsonschema
import pytest

from mutation_projects import CALC, WEAK_TESTS, plant
from pv import cli
from pv.mutation.html import html_page
from pv.mutation.report import MutationReport
from pv.mutation.run import run_mutation
from pv.mutation.stryker import stryker_report

SCHEMA = Path(__file__).parent / "data" / "mutation-testing-report-schema.json"
CONFTEST = "import pytest\n\n\n@pytest.fixture()\ndef limits():\n    from helpers import LIMITS\n\n    return LIMITS\n"
#: a module of the project that a fixture imports while the tests run: an input like the tests
HELPERS = "LIMITS = (0, 10)\n"
USES_HELPERS = "\n\ndef test_limits(limits):\n    assert limits == (0, 10)\n"
EQUIVALENTS = "calc:clamp:compare:0:\n  change: x < lo -> x <= lo\n  reason: at x == lo both return lo\n"


@pytest.fixture(scope="module")
def calc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, MutationReport]]:
    """One run of pv mutate over calc.py with the weak suite (a conftest.py and an equivalents entry)."""
    root = tmp_path_factory.mktemp("calc")
    with pytest.MonkeyPatch.context() as patch:
        plant(root, {"calc.py": CALC, "test_calc.py": WEAK_TESTS + USES_HELPERS, "conftest.py": CONFTEST,
                     "helpers.py": HELPERS, "equivalent.yaml": EQUIVALENTS}, patch)
        yield root, run_mutation(["test_calc.py"], {"calc:clamp", "calc:count_up"}, root,
                                 equivalents_path=root / "equivalent.yaml", workers=2, timeout_scale=1.0,
                                 timeout_slack=3.0)


def test_the_report_names_every_input_by_digest(calc: tuple[Path, MutationReport]) -> None:
    root, report = calc
    names = ("calc.py", "test_calc.py", "conftest.py", "helpers.py", "pytest.ini", "equivalent.yaml")
    assert report.to_json()["inputs"]["files"] == {name: hashlib.sha256((root / name).read_bytes()).hexdigest()
                                          for name in sorted(names)}
    assert report.to_json()["files"] == {"calc": "calc.py"}


def test_the_shared_format_is_valid_against_its_schema(calc: tuple[Path, MutationReport]) -> None:
    _, report = calc
    shared = stryker_report(report.to_json(), report.sources())
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).validate(shared)
    mutants = shared["files"]["calc.py"]["mutants"]
    assert shared["files"]["calc.py"]["source"] == CALC
    assert {m["status"] for m in mutants} >= {"Killed", "Survived", "NoCoverage", "Timeout", "Ignored"}
    line = CALC.splitlines().index("    if x > hi:") + 1
    column = CALC.splitlines()[line - 1].index("x > hi") + 1
    flipped = next(m for m in mutants if m["description"] == "x > hi -> x >= hi")
    assert flipped["location"] == {"start": {"line": line, "column": column},
                                   "end": {"line": line, "column": column + len("x > hi")}}
    assert (flipped["status"], flipped["replacement"], flipped["coveredBy"]) == (
        "Survived", "x >= hi", ["test_calc.py::test_inside"])
    ignored = next(m for m in mutants if m["status"] == "Ignored")
    assert (ignored["id"], ignored["statusReason"]) == ("calc:clamp:compare:0", "at x == lo both return lo")
    killed = next(m for m in mutants if m["description"] == "if x < lo -> if False")
    assert killed["killedBy"] == ["test_calc.py::test_below"]


def test_the_page_and_the_table_show_survivors_diffs(calc: tuple[Path, MutationReport]) -> None:
    _, report = calc
    page = html_page(report.to_json(), report.sources())
    assert escape("-    if x > hi:") in page and escape("+    if x >= hi:") in page
    for outside in ("http://", "https://", "<script", "<link", "src="):
        assert outside not in page  # opens from disk, nothing fetched
    table = report.table()
    assert "    -    if x > hi:\n    +    if x >= hi:" in table
    assert "no-coverage:" in table


def test_show_prints_one_mutants_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    plant(tmp_path, {"calc.py": CALC}, monkeypatch)
    assert cli.main(["mutate", "--show", "calc:clamp:compare:1"]) == 0
    assert capsys.readouterr().out == (
        "--- a/calc.py\n+++ b/calc.py\n@@ -3,5 +3,5 @@\n"
        "     if x < lo:\n         return lo\n-    if x > hi:\n+    if x >= hi:\n         return hi\n     return x\n")
    assert cli.main(["mutate", "--show", "calc:clamp:compare:9"]) == 2
    assert "has no such mutant" in capsys.readouterr().err


def test_output_onto_a_file_the_run_reads_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": WEAK_TESTS, "equivalent.yaml": EQUIVALENTS}, monkeypatch)
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "calc.yaml").write_text("equations:\n  clamp:\n    implementation: calc:clamp\n")
    for target in ("calc.py", "test_calc.py", "equivalent.yaml", "contracts/calc.yaml"):
        before = (tmp_path / target).read_bytes()
        assert cli.main(["mutate", "test_calc.py", "--equivalents", "equivalent.yaml", "-o", target]) == 2
        assert (tmp_path / target).read_bytes() == before
        assert f"{target}: -o names a file this run reads" in capsys.readouterr().err
    (tmp_path / "report.json").write_text(json.dumps({"mutants": [], "modules": []}))
    assert cli.main(["mutate", "--rescore", "report.json", "--equivalents", "equivalent.yaml",
                     "-o", "equivalent.yaml"]) == 2
    assert (tmp_path / "equivalent.yaml").read_text() == EQUIVALENTS
    assert "-o names the equivalents file" in capsys.readouterr().err


def test_an_input_outside_the_project_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    plant(tmp_path, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, monkeypatch)
    outside = tmp_path_factory.mktemp("elsewhere") / "equivalent.yaml"
    outside.write_text(EQUIVALENTS)
    from pv._util.errors import UserError

    with pytest.raises(UserError, match="equivalent.yaml lies outside the project .*; a file outside the project cannot be an input to evidence"):
        run_mutation(["test_calc.py"], {"calc:clamp"}, tmp_path, equivalents_path=outside)

"""A correct contract passes `pv check` by default: engines are chosen by domain (floats go to
Hypothesis alone), and a not-confirmed CrossHair run beside a passing Hypothesis search is
reported as inconclusive, not counted as a failure, and never as a proof."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from pv.checks.engines import crosshair_engine
from pv.cli import main

pytest_plugins = ["pytester"]

IMPLEMENTATION = '''
def total(xs):
    """The sum of a list of floats, left to right."""
    s = 0.0
    for x in xs:
        s += x
    return s


def total_off(xs):
    """A planted defect: one element counted twice."""
    return total(xs) + (xs[0] if xs else 0.0)
'''


def contract(engine: str | None = None, implementation: str = "total", budget: str = "") -> str:
    engine_line = f"\n    engine: {engine}" if engine else ""
    return f"""\
metadata:
  version: 1.0.0
  description: A correct obligation over a list of floats.
name: floats
version: 1.0.0
equations:
  total:
    formula: total(xs) = sum of xs
    implementation: pvfloats:{implementation}
proof_obligations:
- id: FL-001
  type: invariant
  property: the sum of n floats in [-1, 1] is at most n in magnitude
  formal: "|total(xs)| <= len(xs)"
  check:
    given:
      xs: {{list: {{of: {{float: {{min: -1.0, max: 1.0}}}}, max_len: 8}}}}
    call: total
    result: total(xs)
    expect: abs(result) <= len(xs) + 1e-9{engine_line}{budget}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pvfloats.py").write_text(IMPLEMENTATION)
    (tmp_path / "contracts").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    crosshair_engine.set_total_budget(crosshair_engine.DEFAULT_TOTAL_SECONDS)


def check(project: Path, text: str, *options: str) -> int:
    path = project / "contracts" / "floats-v1.yaml"
    path.write_text(text)
    return main(["check", str(path), "--allow-module", "pvfloats", *options])


def test_a_correct_obligation_over_floats_passes_by_default(project: Path, capsys) -> None:
    assert check(project, contract()) == 0
    out = capsys.readouterr().out
    assert "floats-v1::FL-001  hypothesis    passed" in out and "crosshair" not in out


def test_a_planted_defect_still_fails_by_default(project: Path, capsys) -> None:
    assert check(project, contract(implementation="total_off")) == 1
    assert "refuted" in capsys.readouterr().out


def test_inconclusive_crosshair_beside_a_passing_search_is_reported_not_failed(project: Path, capsys) -> None:
    assert check(project, contract("[hypothesis, crosshair]"), "--crosshair-total", "1") == 0
    rows = capsys.readouterr().out.splitlines()
    (crosshair,) = [row for row in rows if "  crosshair  " in row]
    assert "not-confirmed" in crosshair and "inconclusive: not counted" in crosshair and "not a proof" in crosshair
    assert "proved" not in crosshair


def test_the_json_output_lists_the_inconclusive_runs(project: Path, capsys) -> None:
    assert check(project, contract("[hypothesis, crosshair]"), "--crosshair-total", "1", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inconclusive"] == ["floats-v1::FL-001[crosshair]"] and report["failed"] == 0
    assert [v["status"] for v in report["verdicts"]] == ["passed", "not-confirmed"]


def test_not_confirmed_as_the_only_engine_fails(project: Path, capsys) -> None:
    assert check(project, contract("[hypothesis, crosshair]"), "--crosshair-total", "1", "--engine", "crosshair") == 1
    assert "inconclusive" not in capsys.readouterr().out


def test_the_pytest_plugin_skips_the_inconclusive_item_with_its_reason(pytester: pytest.Pytester) -> None:
    (pytester.path / "pvfloats.py").write_text(IMPLEMENTATION)
    (pytester.path / "pyproject.toml").write_text('[tool.pv]\ncontracts = "contracts"\nmodules = ["pvfloats"]\n')
    (pytester.path / "contracts").mkdir()
    (pytester.path / "contracts" / "floats-v1.yaml").write_text(
        contract("[hypothesis, crosshair]", budget="\n    budget: {seconds: 1, examples: 10}"))
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "contracts")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*FL-001 inconclusive (crosshair not-confirmed*not a proof*"])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pv_check_shows_progress_on_a_terminal_only(project: Path, monkeypatch, capsys) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert check(project, contract("[hypothesis, crosshair]"), "--crosshair-total", "1") == 0
    assert "pv check [" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert "pv check [" not in capsys.readouterr().out

"""pv mutate: each operator's mutant, a weak suite's survivor, a timeout, equivalents and the report."""

from __future__ import annotations

import ast
import json
import os
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from mutation_projects import CALC, WEAK_TESTS, plant
from pv import cli
from pv.mutation.equivalents import load_equivalents
from pv.mutation.generation import (
    OPERATORS, defined_names, mutated_code, mutated_source, mutated_text, mutated_tree, sites, unified_diff,
)
from pv.mutation.report import MutationReport, report_problems, rescore
from pv.mutation.results import EQUIVALENT, KILLED, NO_COVERAGE, SURVIVED, TIMEOUT
from pv.mutation.run import run_mutation
from pv.mutation.sampling import wilson
from pv.mutation.targets import whole_modules


def _changes(source: str, operator: str, scopes: tuple[str, ...] = ("",)) -> list[str]:
    return [site.change for site in sites(textwrap.dedent(source), scopes) if site.operator == operator]


@pytest.mark.parametrize(("operator", "source", "expected"), [
    ("compare", "def f(a, b):\n    return a < b\n", ["a < b -> a <= b"]),
    ("compare", "def f(a, b):\n    return a in b\n", ["a in b -> a not in b"]),
    ("arith", "def f(a, b):\n    return a + b\n", ["a + b -> a - b"]),
    ("arith", "def f(a):\n    a *= 2\n    return a\n", ["a *= 2 -> a /= 2"]),
    ("arith", "def f(a):\n    return -a\n", ["-a -> a"]),
    ("bool", "def f(a, b):\n    return a and b\n", ["a and b -> a or b"]),
    ("bool", "def f(a):\n    return not a\n", ["not a -> a"]),
    ("constant", "def f():\n    return 4\n", ["4 -> 5"]),
    ("constant", "def f():\n    return 0.5\n", ["0.5 -> 1.0"]),
    ("constant", "def f():\n    return 'x'\n", ["'x' -> ''"]),
    ("constant", "def f():\n    return True\n", ["True -> False"]),
    ("remove", "def f(out):\n    out.append(1)\n    return out\n", ["out.append(1) -> pass"]),
    ("remove", "def f(x):\n    if x < 0:\n        raise ValueError(f'bad {x}')\n    return x\n",
     ["raise ValueError(f'bad {x}') -> pass"]),
    ("guard", "def f(x):\n    if x:\n        return 1\n    return 2\n", ["if x -> if False"]),
    ("guard", "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\n", ["if x -> if False", "if x -> if True"]),
    ("swap_args", "def f(a, b):\n    return g(a, b)\n", ["g(a, b) -> g(b, a)"]),
    ("early_return", "def f(a):\n    '''doc'''\n    b = a + 1\n    return b\n", ["b = a + 1 -> return None"]),
    ("decrement", "def f():\n    return 1\n", ["1 -> 0"]),
    ("decrement", "def f(x):\n    return x[-1] + 0\n", ["1 -> 0"]),
    ("swap_operands", "def f(a, b):\n    return a - b\n", ["a - b -> b - a"]),
    ("swap_operands", "def f(a, b):\n    return a < b or a + b\n", ["a < b -> b < a"]),
    ("ternary", "def f(a, c):\n    return a if c else 0\n", ["a if c else 0 -> a", "a if c else 0 -> 0"]),
    ("return_none", "def f(a):\n    b = a * 2\n    if a:\n        return b\n    return\n", ["return b -> return None"]),
])
def test_each_operator_produces_its_mutant(operator: str, source: str, expected: list[str]) -> None:
    assert operator in OPERATORS
    assert _changes(source, operator) == expected


RICH = textwrap.dedent('''\
    """A module with every operator's site, comments and non-ASCII text."""
    LIMIT = 4  # a module constant


    def f(a, b, c="é"):
        """Docstring."""
        x = a - b  # kept comment
        if x < c and not b:
            return x
        else:
            x += 1
        y = 1 if a else -1
        out = [max(a, b) + y, c]
        out.append(len("é") / 2)
        return out
    ''')


def test_each_mutants_text_is_the_code_that_runs() -> None:
    """The diff a person reads (the span replaced by its text) parses to the very tree that runs."""
    found = sites(RICH)
    assert {site.operator for site in found} == set(OPERATORS)
    for site in found:
        shown = ast.parse(mutated_text(RICH, site))
        ran = mutated_tree(RICH, site.index)
        assert ast.dump(shown) == ast.dump(ran), site.change
        diff = unified_diff(RICH, site, "m.py")
        assert diff.startswith("--- a/m.py\n+++ b/m.py\n") and diff.count("\n+") >= 1


def test_mutated_code_changes_only_its_site_and_keeps_line_numbers() -> None:
    source = "def f(a, b):\n    x = a < b\n    return x or a == b\n"
    found = sites(source)
    compare = next(site for site in found if site.change == "a == b -> a != b")
    namespace: dict[str, object] = {}
    exec(mutated_code(source, compare.index, filename="m.py"), namespace)
    assert namespace["f"](2, 2) is False and namespace["f"](1, 2) is True  # only == flipped; < intact
    assert "a != b" in mutated_source(source, compare.index) and "a < b" in mutated_source(source, compare.index)
    code = mutated_code(source, compare.index, filename="m.py")
    function = next(const for const in code.co_consts if hasattr(const, "co_firstlineno"))
    assert function.co_filename == "m.py" and function.co_firstlineno == 1


def test_nothing_mutated_outside_code_that_runs() -> None:
    source = textwrap.dedent('''
        """Module docstring."""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import os
        def f(a: int = 3) -> "str":
            """Docstring."""
            raise ValueError(f"text {a + 1}")
    ''')
    found = sites(source)
    changes = [site.change for site in found if site.operator not in ("remove", "early_return")]
    assert changes == ["3 -> 4", "3 -> 2"]  # a default value runs at definition; nothing else is mutable here
    assert [site.change for site in found if site.operator == "remove"] == ["raise ValueError(f'text {a + 1}') -> pass"]


def test_scopes_select_functions_and_module_attributes() -> None:
    source = "LIMIT = 4\n\ndef f(a):\n    return a + LIMIT\n\ndef g(a):\n    return a - 1\n\nclass C:\n    def m(self):\n        return 7\n"
    assert {site.scope for site in sites(source, ("f",))} == {"f"}
    assert [site.key for site in sites(source, ("LIMIT",))] == ["LIMIT:constant:0", "LIMIT:decrement:0"]
    assert {site.scope for site in sites(source, ("C",))} == {"C.m"}
    assert all(site.at_import for site in sites(source, ("LIMIT",))) and not any(
        site.at_import for site in sites(source, ("f",)))
    assert {"LIMIT", "f", "g", "C", "C.m"} <= defined_names(source)


# --- a planted project ------------------------------------------------------------------------

@pytest.fixture()
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return plant(tmp_path, {"calc.py": CALC, "test_calc.py": WEAK_TESTS}, monkeypatch)


def test_weak_suite_leaves_survivors_and_a_loop_times_out(planted: Path) -> None:
    equivalents = planted / "equivalent.yaml"
    equivalents.write_text(
        "calc:clamp:compare:0:\n  change: x < lo -> x <= lo\n  reason: at x == lo both return lo\n"
        "calc:gone:compare:0:\n  change: a -> b\n  reason: a stale entry\n"
        "other.module:f:compare:0:\n  change: a -> b\n  reason: a module this run does not mutate\n")
    report = run_mutation(["test_calc.py"], {"calc:clamp", "calc:count_up"}, planted,
                                 equivalents_path=equivalents, workers=2, timeout_scale=1.0, timeout_slack=5.0)
    by_change = {(m.site.scope, m.site.change): m for m in report.mutants}
    status = {key: report.status(m) for key, m in by_change.items()}
    # above the range is never tested: removing the upper guard survives
    assert status[("clamp", "if x > hi -> if False")] == SURVIVED
    assert status[("clamp", "if x < lo -> if False")] == KILLED
    assert by_change[("clamp", "if x < lo -> if False")].killed_by == "test_calc.py::test_below"
    assert status[("clamp", "x < lo -> x <= lo")] == EQUIVALENT
    # i += 1 -> i -= 1 never ends
    assert status[("count_up", "i += 1 -> i -= 1")] == TIMEOUT
    data = report.to_json()
    assert data["killed"] >= 1 and data["survived"] >= 1 and data["timeout"] >= 1
    assert data["equivalent"] == [{"key": "calc:clamp:compare:0", "change": "x < lo -> x <= lo",
                                   "reason": "at x == lo both return lo"}]
    # no test reaches the body of the upper guard: its own count, and in the score's denominator
    assert status[("clamp", "return hi -> return None")] == NO_COVERAGE and data["no_coverage"] >= 1
    assert data["score"] == data["killed"] / (data["killed"] + data["survived"] + data["no_coverage"])
    assert data["standard_score"] == (data["killed"] + data["timeout"]) / (
        data["killed"] + data["timeout"] + data["survived"] + data["no_coverage"])
    assert [row["module"] for row in data["modules"]] == ["calc"]
    assert report.stale_equivalents() == ["calc:gone:compare:0: no such mutant in the current code"]
    assert report_problems(report, 0.99)[-1].startswith("mutation score")
    table = report.table()
    assert "calc" in table and "survived:" in table and "score" in table
    assert (planted / "calc.py").read_text() == CALC  # no mutant was written into the source
    # judged again without the equivalents file, the equivalent mutant counts as a survivor
    again = rescore(json.loads(json.dumps(data)), {})
    assert again["survived"] == data["survived"] + 1 and again["equivalent"] == [] and again["stale_equivalents"] == []
    assert rescore(again, load_equivalents(equivalents))["score"] == data["score"]


def test_listed_equivalents_are_not_run_unless_checked(planted: Path) -> None:
    """A listed mutant counts as equivalent without a run; --check-equivalents finds a wrong entry."""
    equivalents = planted / "equivalent.yaml"
    equivalents.write_text("calc:clamp:guard:0:\n  change: if x < lo -> if False\n  reason: wrongly listed\n")

    def run(check: bool) -> MutationReport:
        return run_mutation(["test_calc.py"], {"calc:clamp"}, planted, equivalents_path=equivalents,
                                   workers=1, check_equivalents=check)

    trusted = run(False)
    listed = next(m for m in trusted.mutants if m.key == "calc:clamp:guard:0")
    assert (trusted.status(listed), listed.applied, trusted.stale_equivalents()) == (EQUIVALENT, "", [])
    checked = run(True)
    assert checked.stale_equivalents() == [
        "calc:clamp:guard:0: listed as equivalent but killed by test_calc.py::test_below"]
    assert trusted.score_of(trusted.counts()) == (checked.score_of(checked.counts() - Counter({"killed": 1})))


def test_a_source_edited_during_the_run_is_reported_and_not_mutated(planted: Path) -> None:
    """Mutants are made from the text read at the start; a file that changed since fails the run."""
    def edit(_: object) -> None:
        (planted / "calc.py").write_text(CALC.replace("    return x\n", "    return x + 1\n"))  # test_inside fails

    report = run_mutation(["test_calc.py"], {"calc:clamp"}, planted, workers=1, checkpoint=edit,
                                 checkpoint_every_s=0.0)
    by_change = {m.site.change: report.status(m) for m in report.mutants}
    # judged on the text read at the start: made from the edited text, test_inside would kill them
    assert by_change["x > hi -> x >= hi"] == by_change["if x > hi -> if False"] == SURVIVED
    assert report.changed == ["calc.py"]
    assert "calc.py changed while pv mutate ran" in " ".join(report_problems(report, None))


def test_cli_bad_input_exits_2(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["mutate", "no-such-tests"]) == 2
    assert "no such test file or folder: no-such-tests" in capsys.readouterr().err
    assert cli.main(["mutate", "test_calc.py", "--min-score", "2"]) == 2
    (planted / "bad.yaml").write_text("key: {change: a -> b}\n")
    assert cli.main(["mutate", "test_calc.py", "--equivalents", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: key: expected" in err and "Traceback" not in err


def test_qa_gate_min_mutation_score_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    source = Path(__file__).resolve().parents[1] / "contracts" / "distill-kd-loss-v1.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for value, code in ((0.95, 0), (1.5, 1), ("high", 1)):
        data["qa_gate"]["min_mutation_score"] = value
        path = tmp_path / f"c{code}" / source.name
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        assert cli.main(["validate", str(path)]) == code, value
    assert "min_mutation_score" in capsys.readouterr().out


SHAPES = '''\
import functools

LIMIT = 10


def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        if not args:
            raise TypeError('no arguments')
        return fn(*args)
    return wrapper


class Box:
    def __init__(self, size):
        self.size = size

    @property
    def big(self):
        return self.size > LIMIT

    @staticmethod
    def double(x):
        return x * 2

    def grow(self, by):
        def step(v):
            return v + by
        return Box(step(self.size))


@traced
def area(w, h):
    return w * h


@functools.lru_cache(maxsize=None)
def square(n):
    return n * n
'''

#: every line of shapes is tested; the functions are reached through wrappers, properties, closures
SHAPES_TESTS = '''\
from shapes import Box, area, square


def test_big():
    assert Box(11).big and not Box(10).big


def test_double():
    assert Box.double(3) == 6


def test_grow():
    assert Box(2).grow(3).size == 5


def test_area():
    assert area(2, 3) == 6


def test_square():
    assert square(3) == 9
'''


@pytest.fixture()
def shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return plant(tmp_path, {"shapes.py": SHAPES, "test_shapes.py": SHAPES_TESTS}, monkeypatch)


def test_swapped_mutants_decide_as_fresh_imports_do(shapes: Path) -> None:
    """The fast path (mutants swapped into a collected session) against its reference (fresh imports)."""
    def run(live: bool) -> dict[str, tuple[str, str]]:
        report = run_mutation(["test_shapes.py"], {"shapes"}, shapes, workers=2, live=live)
        return {m.key: (m.status, m.applied) for m in report.mutants}

    swapped, imported = run(True), run(False)
    assert swapped.keys() == imported.keys() and len(swapped) > 15
    assert {key: status for key, (status, _) in swapped.items()} == {
        key: status for key, (status, _) in imported.items()}
    assert {applied for _, applied in imported.values() if applied} == {"imported"}  # "": reached by no test
    # mutants in function bodies are swapped in (in the wrapper made at import too), except where
    # the mutant's closure differs (an early return drops the wrapper's use of fn) or its text
    # cannot keep the original's lines (a return before a compound statement)
    assert swapped["shapes:traced.wrapper:early_return:0"] == (KILLED, "imported")
    assert swapped["shapes:traced.wrapper:bool:0"] == (KILLED, "swapped")
    assert swapped["shapes:Box.big:compare:0"] == (KILLED, "swapped")
    assert swapped["shapes:square:arith:0"][0] == KILLED
    # a module constant runs at import: it is imported afresh
    assert swapped["shapes:LIMIT:constant:0"] == (KILLED, "imported")
    assert sorted(key for key, (_, applied) in swapped.items() if applied == "imported") == [
        "shapes:Box.grow:early_return:0", "shapes:LIMIT:constant:0", "shapes:LIMIT:decrement:0",
        "shapes:traced.wrapper:early_return:0", "shapes:traced.wrapper:return_none:0", "shapes:traced:early_return:0"]


def test_swapped_source_is_what_inspect_and_triton_read(shapes: Path) -> None:
    """A swapped mutant's text is in linecache (Triton's interpreter re-reads kernels' source)."""
    import importlib
    import inspect
    import linecache

    from pv.mutation import live

    module = importlib.import_module("shapes")
    path = str(shapes / "shapes.py")
    site = next(s for s in sites(SHAPES, [""], path) if s.key == "Box.double:arith:0")
    before = linecache.cache.get(path)
    try:
        live.apply(path, SHAPES, site, [""])
        assert module.Box.double(3) == 1.5
        assert "return x / 2" in inspect.getsource(module.Box.double)
        early = next(s for s in sites(SHAPES, [""], path) if s.key == "area:early_return:0")
        live.apply(path, SHAPES, early, [""])
        assert module.area(2, 3) is None
        assert inspect.getsource(module.area).splitlines()[-1].strip() == "return None; return w * h"
        assert inspect.getsource(module.square).startswith("@functools.lru_cache")  # other lines kept in place
    finally:
        linecache.cache.pop(path, None)
        if before is not None:
            linecache.cache[path] = before
        sys.modules.pop("shapes", None)


KERNEL = """\
import triton
import triton.language as tl


@triton.jit
def add_one(x_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    live = offsets < n
    tl.store(x_ptr + offsets, tl.load(x_ptr + offsets, mask=live) + 1.0, mask=live)
"""


def test_swapped_triton_kernel_runs_the_mutant_after_it_ran_unmutated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton's interpreter rewrites a kernel from its source once per process: a swap must reach it."""
    pytest.importorskip("triton", reason="Triton is installed on Linux x86_64 only")
    import importlib

    import torch

    from pv.mutation import live

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    (tmp_path / "kernel_mod.py").write_text(KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("kernel_mod")
    path = str(tmp_path / "kernel_mod.py")

    def run() -> list[float]:
        x = torch.arange(4, dtype=torch.float32)
        module.add_one[(1,)](x, 4, BLOCK=8)
        return x.tolist()

    try:
        assert run() == [1.0, 2.0, 3.0, 4.0]  # the interpreter has now rewritten the unmutated kernel
        site = next(s for s in sites(KERNEL, [""], path) if s.change.endswith("- 1.0"))
        live.apply(path, KERNEL, site, [""])
        assert run() == [-1.0, 0.0, 1.0, 2.0]
    finally:
        sys.modules.pop("kernel_mod", None)


#: a test that imports the kernel module only when it runs (as distill.kernels.runtime loads kernels)
LAZY_KERNEL_TEST = """\
import importlib

import torch


def test_add_one():
    module = importlib.import_module("kernel_mod")
    x = torch.arange(4, dtype=torch.float32)
    module.add_one[(1,)](x, 4, BLOCK=8)
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0]
"""


def test_kernel_module_imported_by_a_test_is_swapped_and_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel whose module no test imported at collection: the swap must still reach what Triton reads."""
    pytest.importorskip("triton", reason="Triton is installed on Linux x86_64 only")
    plant(tmp_path, {"kernel_mod.py": KERNEL, "test_kernel.py": LAZY_KERNEL_TEST}, monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    report = run_mutation(["test_kernel.py"], {"kernel_mod:add_one"}, tmp_path, workers=1)
    by_change = {m.site.change: m for m in report.mutants}
    added = next(m for change, m in by_change.items() if change.endswith("- 1.0"))
    assert (added.status, added.applied) == (KILLED, "swapped")


SCALE = '''\
def scale(x):
    return x * 3 + 1
'''
#: test_covers reaches every mutant of scale and kills none (it counts its runs); test_value kills them all,
#: and is the slower test by a sleep far above what load can add to test_covers
SCALE_TESTS = '''\
import os
import time

from scale import scale


def test_covers():
    with open(os.environ["SCALE_RUNS"], "a") as runs:
        runs.write("run\\n")
    scale(2)


def test_value():
    time.sleep(0.5)
    assert scale(2) == 7
'''


def test_a_test_that_killed_a_functions_mutant_runs_first_for_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fastest first, the first mutant runs test_covers, then test_value kills it; every later mutant
    of scale runs its function's killer first and stops there, so test_covers never runs again."""
    plant(tmp_path, {"scale.py": SCALE, "test_scale.py": SCALE_TESTS}, monkeypatch)
    runs = tmp_path / "runs.txt"
    monkeypatch.setenv("SCALE_RUNS", str(runs))
    report = run_mutation(["test_scale.py"], {"scale:scale"}, tmp_path, workers=1)
    statuses = Counter(m.status for m in report.mutants)
    assert statuses[KILLED] >= 5 and set(statuses) == {KILLED}
    assert {m.killed_by for m in report.mutants} == {"test_scale.py::test_value"}
    assert runs.read_text().count("run") == 2  # the traced first run, then the first mutant only


LIMITS = '''\
__pv_bindable__ = ("LIMIT",)
LIMIT = 10
'''
LIMITS_CONTRACT = '''\
metadata:
  version: 1.0.0
  description: the documented limit
equations:
  limit:
    formula: LIMIT = 10
proof_obligations:
- id: LIM-INV-001
  type: invariant
  property: the limit is the documented one
  formal: LIMIT == 10
  check:
    given:
      case: {int: {min: 0, max: 0}}
    constants: {LIMIT: limits:LIMIT}
    expect: LIMIT == 10
'''


def test_a_contract_check_that_reads_a_constant_kills_its_mutants(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs no line of limits.py (the module was imported before it), yet it reads LIMIT: the
    constant's mutants must be run against it, not called unreached."""
    plant(tmp_path, {"limits.py": LIMITS, "conftest.py": "import limits  # imported before any test runs\n",
                     "pyproject.toml": '[tool.pv]\nmodules = ["limits"]\ncontracts = "contracts"\n'},
          monkeypatch)
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "limits.yaml").write_text(LIMITS_CONTRACT)
    report = run_mutation(["contracts"], {"limits:LIMIT"}, tmp_path, workers=1)
    by_change = {m.site.change: m for m in report.mutants}
    assert (by_change["10 -> 11"].status, by_change["10 -> 11"].killed_by) == (
        KILLED, "contracts/limits.yaml::LIM-INV-001[exhaustive]")


def test_include_mutates_whole_modules_that_nothing_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--include`` adds a module, or every module of a package, to what contracts and falsifiers name."""
    plant(tmp_path, {"test_pkg.py": "from pkg.sub.b import half\n\n\ndef test_half():\n    assert half(4) == 2\n"},
          monkeypatch)
    for name, text in {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/sub/__init__.py": "",
                       "pkg/sub/b.py": "def half(x):\n    return x // 2\n", "pkg/loose/c.py": "C = 3\n",
                       "pkg/not-a-name.py": "D = 4\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # a folder without __init__.py and a file that is no module name are not modules of the package
    assert whole_modules("pkg") == {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b"}
    assert whole_modules("pkg.sub.b") == {"pkg.sub.b"}
    assert cli.main(["mutate", "test_pkg.py"]) == 2
    assert "nothing to mutate" in capsys.readouterr().err
    assert cli.main(["mutate", "test_pkg.py", "--include", "pkg.nothing"]) == 2
    assert "--include pkg.nothing: no Python module or package of that name" in capsys.readouterr().err
    assert cli.main(["mutate", "test_pkg.py", "--include", "pkg", "--module", "pkg.sub",
                     "--format", "json", "-o", "report.json"]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["files"] == {"pkg.sub": "pkg/sub/__init__.py", "pkg.sub.b": "pkg/sub/b.py"}
    assert {(m["change"], m["status"]) for m in data["mutants"]} >= {("x // 2 -> x * 2", "killed")}


def test_a_sample_runs_only_its_mutants_and_estimates_the_score(planted: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--sample N``: N of the reached mutants run, drawn with the seed; the rest are not run, the unreached
    are counted exactly, and the score is estimated with a Wilson interval; the report is not complete."""
    def sampled(size: int, seed: int) -> dict:
        assert cli.main(["mutate", "test_calc.py", "--include", "calc", "--sample", str(size), "--seed", str(seed),
                         "--format", "json", "-o", "report.json"]) == 0
        return json.loads((planted / "report.json").read_text())

    data = sampled(4, 7)
    ran = [m for m in data["mutants"] if m.get("sampled")]
    left = [m for m in data["mutants"] if m.get("sampled") is False]
    unreached = [m for m in data["mutants"] if not m["covered_by"]]
    assert len(ran) == 4 and all(m["status"] != "not-run" for m in ran)
    assert left and all((m["status"], m["detail"]) == ("not-run", "not in the sample") for m in left)
    assert unreached and all(m["status"] == "no-coverage" and "sampled" not in m for m in unreached)
    assert data["sample"] == {"seed": 7, "size": 4, "frame": len(ran) + len(left)} and data["complete"] is False
    killed = sum(m["status"] == "killed" for m in ran)
    decided = killed + sum(m["status"] == "survived" for m in ran)
    covered = data["sample"]["frame"] * decided / 4
    assert data["estimate"]["score"] == pytest.approx(killed / decided * covered / (covered + len(unreached)))
    assert data["estimate"]["low"] <= data["estimate"]["score"] <= data["estimate"]["high"]
    assert [row["module"] for row in data["modules"]] == ["calc"] and data["modules"][0]["estimate"] == data["estimate"]
    assert cli.main(["mutate", "--rescore", "report.json"]) == 0
    table = capsys.readouterr().out
    assert "estimated" in table.splitlines()[0] and "a random sample (seed 7) of 4 of the" in table
    assert sorted(m["key"] for m in sampled(4, 7)["mutants"] if m.get("sampled")) == sorted(m["key"] for m in ran)
    # a sample as large as the frame runs every mutant: the estimate is the score
    whole = sampled(1000, 7)
    assert whole["not_run"] == 0 and whole["estimate"]["score"] == pytest.approx(whole["score"])
    assert cli.main(["mutate", "test_calc.py", "--include", "calc", "--sample", "0"]) == 2
    assert "--sample" in capsys.readouterr().err


def test_wilson_interval_matches_the_published_value() -> None:
    # the score method's intervals of Newcombe's examples (Statistics in Medicine 17, 1998, Table II)
    for (successes, trials), published in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                           (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        assert wilson(successes, trials) == pytest.approx(published, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


DOUBLE = '''\
def double(x):
    return x * 2
'''
#: the only calls of double happen in forked processes, which end through os._exit (as forked ranks do)
FORKED_TESTS = '''\
import os

from double import double


def _in_child(x):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if double(x) == 2 * x else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_child_of_three():
    assert _in_child(3) == 0


def test_child_of_grandchild():
    pid = os.fork()
    if pid == 0:
        os._exit(_in_child(5))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_lines_run_in_forked_children_count_for_the_test_that_forked_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank or a killed run is a fork of the test's process: its lines reach the mutants (no-coverage before)."""
    plant(tmp_path, {"double.py": DOUBLE, "test_double.py": FORKED_TESTS}, monkeypatch)
    report = run_mutation(["test_double.py"], {"double:double"}, tmp_path, workers=1)
    assert report.mutants and all(m.status == KILLED for m in report.mutants), [
        (m.site.change, m.status) for m in report.mutants]
    assert all(sorted(m.tests) == ["test_double.py::test_child_of_grandchild", "test_double.py::test_child_of_three"]
               for m in report.mutants), [(m.site.change, m.tests) for m in report.mutants]

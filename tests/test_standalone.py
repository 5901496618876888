"""pv as a tool for any project: [tool.pv] configuration, package data, plugins inert until a
project opts in, namespaced options, registered markers, and the example project."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pv._util.config import ConfigError, load_config
from pv.cli import main

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chunking"
PV_PLUGINS = ("pv-contracts", "pv-report", "pv-falsifiers")


# --- configuration ------------------------------------------------------------------------------


def test_the_project_is_found_from_the_working_directory_upwards(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pv]\ncontracts = "spec"\nmodules = ["mypkg"]\nerrors = "mypkg.errors"\n'
        'falsifiers = ["ft", "more/test_ft_x.py"]\nprofiles = ["hw"]\nreports = "out"\n'
        'trusted_keys = ["keys/ci.pub"]\n'
    )
    (tmp_path / "src" / "deep").mkdir(parents=True)
    config = load_config(tmp_path / "src" / "deep")
    assert config.configured and config.root == tmp_path.resolve()
    assert config.contracts == tmp_path.resolve() / "spec"
    assert config.modules == ("mypkg",) and config.errors == "mypkg.errors"
    assert config.falsifiers == (tmp_path.resolve() / "ft", tmp_path.resolve() / "more" / "test_ft_x.py")
    assert config.profiles == (tmp_path.resolve() / "hw",)
    assert config.reports == tmp_path.resolve() / "out"
    assert config.trusted_keys == (tmp_path.resolve() / "keys" / "ci.pub",)


def test_a_nearer_pyproject_without_tool_pv_is_not_a_pv_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pv]\nmodules = ["outer"]\n')
    inner = tmp_path / "vendored"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert not load_config(inner).configured
    assert load_config(tmp_path).modules == ("outer",)
    assert not load_config(Path("/")).configured


def test_root_and_environment_variables_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pv]\nmodules = ["a"]\ncontracts = "c"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_config(elsewhere, root=tmp_path).modules == ("a",)
    monkeypatch.setenv("PV_ROOT", str(tmp_path))
    monkeypatch.setenv("PV_MODULES", "b, c.d")
    monkeypatch.setenv("PV_CONTRACTS", "other")
    config = load_config(elsewhere)
    assert config.modules == ("b", "c.d") and config.contracts == tmp_path.resolve() / "other"
    assert config.overridden == {"modules", "contracts"}
    monkeypatch.setenv("PV_ROOT", str(elsewhere))  # a named folder needs no [tool.pv] table
    assert load_config().root == elsewhere.resolve() and load_config().modules == ("b", "c.d")


@pytest.mark.parametrize(("table", "message"), [
    ('[tool.pv]\nmodule = ["x"]\n', r"unknown key 'module' \(known: contracts, modules"),
    ('[tool.pv]\nmodules = "x"\n', r"\[tool.pv\] modules: expected a list of non-empty strings, got 'x'"),
    ('[tool.pv]\ncontracts = 3\n', r"\[tool.pv\] contracts: expected a non-empty string, got 3"),
    ("[tool.pv\n", r"invalid TOML"),
])
def test_a_bad_table_is_one_clear_error_naming_the_file(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(table)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(tmp_path)
    assert str(tmp_path / "pyproject.toml") in str(caught.value)


def test_gate_and_verify_outside_any_project_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.json").write_text("{}")
    for argv in (["gate", "report.json"], ["verify"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no pv project here" in err and "[tool.pv]" in err and "Traceback" not in err, err
    (tmp_path / "pyproject.toml").write_text("[tool.pv]\ncontracts = 'missing'\n")
    assert main(["gate", "report.json"]) == 2
    assert "[tool.pv] contracts of" in capsys.readouterr().err


def test_a_bad_root_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "--root", str(tmp_path / "nope"), "r.json"]) == 2
    assert "--root:" in capsys.readouterr().err


# --- package data and no project in pv's defaults -------------------------------------------------


def _pv_sources() -> list[Path]:
    return sorted((ROOT / "src" / "pv").rglob("*.py"))


def test_nothing_in_pv_is_found_relative_to_a_source_file() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in _pv_sources()
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Name) and node.id == "__file__"]
    assert offenders == []


def test_no_word_of_the_system_under_test_in_pv() -> None:
    word = re.compile(r"(?<![-\w])distill\b")
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in [*_pv_sources(), *(ROOT / "src" / "pv").rglob("*.json"), *(ROOT / "src" / "pv").rglob("*.yaml")]
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if word.search(line)]
    assert offenders == []


def test_pv_distill_configures_itself_like_any_project() -> None:
    config = load_config(ROOT)
    assert config.modules == ("distill",) and config.errors == "distill.errors"
    assert config.contracts == ROOT / "contracts" and config.profiles == (ROOT / "profiles",)


# --- pytest plugins: inert until a project opts in, namespaced options, registered markers ----------


class _Recorder:
    """Stands in for pytest's parser: records the option names a plugin adds."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def getgroup(self, *args: object, **kwargs: object) -> _Recorder:
        return self

    def addoption(self, *names: str, **kwargs: object) -> None:
        self.names += names

    def addini(self, name: str, *args: object, **kwargs: object) -> None:
        self.names.append(name)


def test_every_option_pv_adds_to_pytest_is_namespaced() -> None:
    from pv.plugins import contracts, falsifiers, report

    recorder = _Recorder()
    for plugin in (contracts, report, falsifiers):
        plugin.pytest_addoption(recorder)  # type: ignore[arg-type]
    assert recorder.names and all(name.startswith("--pv-") for name in recorder.names), recorder.names


UNRELATED_CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--profile", action="store_true")  # as pytest-profiling does
'''

#: The unrelated project's own tests: one that passes, one with a marker it never registered. The
#: test below asserts on pytest's outcome of them, with pv installed and without.
UNRELATED_TESTS = '''
import pytest


def test_plain():
    assert 1 + 1 == 2


@pytest.mark.gpu
def test_with_an_unregistered_marker():
    pass
'''


def _outcome(pytester: pytest.Pytester, *args: str) -> tuple[int, str]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", "-rA", *args)
    summary = [line for line in result.outlines if re.match(r"^(PASSED|FAILED|ERROR|SKIPPED) ", line)]
    return int(result.ret), "\n".join(sorted(summary)) + "\n" + result.outlines[-1].split(" in ")[0]


def test_pytest_in_an_unrelated_project_gives_the_same_outcome_with_pv_installed(pytester: pytest.Pytester) -> None:
    contracts = pytester.path / "contracts"
    contracts.mkdir()
    (contracts / "deploy.yaml").write_text("kind: Service\nproof_obligations: [\n---\nkind: Deployment\n")
    (contracts / "values.yaml").write_text("replicas: {{ .Values.replicas }}\n")
    (pytester.path / "pyproject.toml").write_text('[project]\nname = "unrelated"\n')
    pytester.makeconftest(UNRELATED_CONFTEST)
    pytester.makepyfile(test_app=UNRELATED_TESTS)
    with_pv = _outcome(pytester)
    without_pv = _outcome(pytester, *(arg for name in PV_PLUGINS for arg in ("-p", f"no:{name}")))
    assert with_pv == without_pv
    assert with_pv[0] == pytest.ExitCode.INTERRUPTED and "'gpu' not found in `markers`" in "".join(
        pytester.runpytest_subprocess("--strict-markers").outlines)


def test_a_pv_project_registers_every_marker_pv_applies(pytester: pytest.Pytester) -> None:
    (pytester.path / "pyproject.toml").write_text('[tool.pv]\ncontracts = "contracts"\n')
    (pytester.path / "contracts").mkdir()
    (pytester.path / "contracts" / "c.yaml").write_text(
        "falsification_tests:\n- {id: FT-C-001, rule: r, prediction: p, test: t, if_fails: f}\n")
    pytester.makeconftest(
        "from pv.plugins.falsifiers import Mutant\n\n\ndef pytest_pv_mutants(config):\n"
        "    return [Mutant('m', 'does nothing', lambda monkeypatch: None)]\n")
    pytester.makepyfile(test_ft_c=(
        "import pytest\n\n\n@pytest.mark.gpu\n@pytest.mark.falsifies('FT-C-001', mutants=['m'])\n"
        "def test_c():\n    pass\n"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=1)
    markers = "\n".join(pytester.runpytest_subprocess("--markers").outlines)
    assert "@pytest.mark.falsifies(id, mutants)" in markers and "@pytest.mark.gpu" in markers


def test_contracts_are_collected_only_from_the_configured_folder(pytester: pytest.Pytester) -> None:
    shutil.copytree(EXAMPLE / "contracts", pytester.path / "spec")
    shutil.copytree(EXAMPLE / "contracts", pytester.path / "contracts")  # not the configured folder
    shutil.copytree(EXAMPLE / "chunker", pytester.path / "chunker")
    (pytester.path / "pyproject.toml").write_text(
        '[tool.pv]\ncontracts = "spec"\nmodules = ["chunker"]\nerrors = "chunker"\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    collected = [line for line in result.outlines if "::" in line]
    assert collected and all(line.startswith("spec/chunking-v1.yaml::") for line in collected), collected
    # asked on the command line: a file is collected even outside the configured folder
    named = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                          "contracts/chunking-v1.yaml")
    assert any(line.startswith("contracts/chunking-v1.yaml::CHUNK-INV-001") for line in named.outlines)


# --- the example project, outside the repository --------------------------------------------------


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "chunking"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    monkeypatch.chdir(copy)
    return copy


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_example_validates_and_its_false_obligation_is_refuted(
    example: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "contracts", "wrong"]) == 0
    assert main(["check", "wrong"]) == 1
    out = capsys.readouterr().out
    assert "CHUNK-WRONG-001  exhaustive    refuted" in out and '"inputs": {"n": 1, "size": 2}' in out
    assert main(["check", "contracts", "--obligation", "CHUNK-INV-002"]) == 0
    assert "proved" in capsys.readouterr().out


def test_the_example_falsifiers_pass_and_bad_bindings_are_collection_errors(example: Path) -> None:
    run = _pytest(example, "falsifiers")
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-2000:]
    (example / "falsifiers" / "test_ft_bad_id.py").write_text(
        "import pytest\n\n\n@pytest.mark.falsifies('FT-CHUNK-999', mutants=['last-chunk-dropped'])\n"
        "def test_unknown_id():\n    pass\n")
    (example / "falsifiers" / "test_ft_bad_mutant.py").write_text(
        "import pytest\n\n\n@pytest.mark.falsifies('FT-CHUNK-001', mutants=['no-such-mutant'])\n"
        "def test_unknown_mutant():\n    pass\n")
    run = _pytest(example, "falsifiers/test_ft_bad_id.py", "falsifiers/test_ft_bad_mutant.py")
    assert run.returncode == pytest.ExitCode.INTERRUPTED
    assert "FT-CHUNK-999 is not a falsification_tests id of any contract" in run.stdout
    assert "names unknown mutants ['no-such-mutant']" in run.stdout


def test_replace_rebinds_copies_and_dispatch_tables_even_in_the_owner_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    from pv.plugins.falsifiers import MutantRegistry

    owner = types.ModuleType("fakepkg.core")
    exec("def f():\n    return 1\nTABLE = {'f': f}\n", owner.__dict__)
    user = types.ModuleType("fakepkg.user")
    user.f = owner.f  # type: ignore[attr-defined]  # from fakepkg.core import f
    outside = types.ModuleType("elsewhere")
    outside.f = owner.f  # type: ignore[attr-defined]
    for module in (owner, user, outside):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    registry = MutantRegistry(packages=["fakepkg"])
    with monkeypatch.context() as patch:
        registry.replace(patch, "fakepkg.core:f", lambda original: lambda: original() + 1)
        assert (owner.f(), owner.TABLE["f"](), user.f()) == (2, 2, 2)  # type: ignore[attr-defined]
        assert outside.f() == 1  # type: ignore[attr-defined]  # not a package of the project
    assert (owner.f(), owner.TABLE["f"](), user.f()) == (1, 1, 1)  # type: ignore[attr-defined]


def test_the_example_mutants_are_all_killed(example: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "pv", "vacuity"], cwd=example, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 falsifiers, 4 mutant runs: 4 killed" in run.stdout

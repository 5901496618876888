"""pytest plugin: the falsifier protocol (binding check, mutants, the kill rule, ``--pv-vacuity``).

A falsifier is a test marked ``@pytest.mark.falsifies("FT-...", mutants=[...])``
naming the planted defects ("mutants") of the code under test that it must
detect. A project declares its mutants by implementing the hook
:func:`pytest_pv_mutants` in a ``conftest.py`` (``MutantRegistry`` helps write
them), and may name the errors with which its code refuses bad input in
:func:`pytest_pv_kill_exceptions`.

At collection, every falsifier must cite an id that a contract of the project's
contracts folder declares in ``falsification_tests`` and name at least one known
mutant, else its module is a collection error.

With ``--pv-vacuity`` each falsifier is parametrized over ``[unmutated,
*mutants]``; the fixture ``pv_mutant`` applies a mutant before the test body
(and undoes it after), and the outcome of a mutant run is inverted: a falsifier
that fails with a failed assertion (or a refusal by the code under test) has
killed the mutant (pass); one that still passes is vacuous (fail); any other
exception is a crash, which proves nothing (fail). Each executed mutant run
records ``("pv_mutant", {...})`` in its user_properties and every item of a
vacuity run ``("pv_vacuity", {...})``; ``--pv-vacuity-log PATH`` writes all runs
as JSON (read by ``pv vacuity``). A run in which every selected falsifier
skipped exits 5 (no tests), never 0.

The plugin is inert (it adds only its options) unless the project configures pv
(``[tool.pv]``), or ``--pv-vacuity`` / ``--pv-contracts`` is given.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pv._util.files import InputError, read_input
from pv._util.modules import project_source
from pv._util.properties import encode_property
from pv.contracts.loading import MAX_BYTES
from pv.evidence import vacuity
from pv.plugins import activation

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class Mutant:
    """A planted defect: ``patch(monkeypatch)`` applies it (monkeypatch undoes it)."""

    name: str
    description: str
    patch: Patch


class MutantRegistry:
    """A project's mutants, declared with the :meth:`mutant` decorator.

    ``packages``: top-level packages whose modules may hold a copy of a replaced
    function (``from mypkg.core import f``); :meth:`replace` rebinds those too.
    ``falsifier_prefix``: falsifier modules, which may import the code as well.
    """

    def __init__(self, packages: Sequence[str] = (), falsifier_prefix: str = "test_") -> None:
        self.mutants: dict[str, Mutant] = {}
        self.packages = tuple(packages)
        self.falsifier_prefix = falsifier_prefix

    def mutant(self, name: str, description: str) -> Callable[[Patch], Patch]:
        """Register the decorated ``patch(monkeypatch)`` as mutant ``name``."""

        def register(patch: Patch) -> Patch:
            if name in self.mutants:
                raise ValueError(f"mutant {name!r} registered twice")
            self.mutants[name] = Mutant(name, description, patch)
            return patch

        return register

    def replace(self, monkeypatch: pytest.MonkeyPatch, target: str, build: Callable[[Any], Any]) -> None:
        """Replace ``module:attr`` or ``module:Class.attr`` by ``build(original)`` everywhere it is bound.

        A module-level function is also rebound in every loaded module of ``packages``
        (and the falsifier modules) that holds it, by name or in a dict (a dispatch table).
        """
        module_name, _, path = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *parents, attr = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, attr)
        new = build(original)
        monkeypatch.setattr(owner, attr, new)
        if parents:  # a class attribute: every caller looks it up through the class
            return
        for other in list(sys.modules.values()):
            if not self._binds_code_under_test(getattr(other, "__name__", "") or ""):
                continue
            for key, value in list(vars(other).items()):
                if value is original and other is not owner:
                    monkeypatch.setattr(other, key, new)
                elif isinstance(value, dict):  # dispatch tables, in the owner module too
                    for entry, bound in list(value.items()):
                        if bound is original:
                            monkeypatch.setitem(value, entry, new)

    def _binds_code_under_test(self, module_name: str) -> bool:
        return module_name.split(".")[0] in self.packages or module_name.rsplit(".", 1)[-1].startswith(
            self.falsifier_prefix)


class HookSpecs:
    """Hooks a project's ``conftest.py`` implements."""

    @pytest.hookspec
    def pytest_pv_mutants(self, config: pytest.Config) -> Mapping[str, Mutant] | Iterable[Mutant]:
        """The project's mutants (``{name: Mutant}`` or Mutants); the results of all conftests are merged."""

    @pytest.hookspec
    def pytest_pv_kill_exceptions(self, config: pytest.Config) -> Iterable[type[BaseException]]:
        """Errors with which the code under test refuses bad input: raising one kills a mutant."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(HookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pv-falsifiers", "pv falsifiers and mutants")
    group.addoption("--pv-vacuity", action="store_true",
                    help="also run every falsifier once per mutant it names, with the mutant "
                         "applied; passes only where the mutant makes the falsifier fail")
    group.addoption("--pv-vacuity-log", metavar="PATH",
                    help="write the outcome of every vacuity run as JSON to PATH")


def pytest_configure(config: pytest.Config) -> None:
    if not (activation.active(config) or config.getoption("pv_vacuity")):
        return
    config.addinivalue_line("markers", "falsifies(id, mutants): binds a test to the FT-* id of a contract "
                                       "and the mutants it must kill")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.pluginmanager.register(FalsifierProtocol(config), "pv-falsifier-protocol")
    path = config.getoption("pv_vacuity_log")
    if path and not hasattr(config, "workerinput"):  # on the controller only
        config.pluginmanager.register(vacuity.VacuityLog(path), "pv-vacuity-log")


def bindings(node: pytest.Function | pytest.Item) -> list[tuple[str, tuple[str, ...]]]:
    """``(FT-id, mutant names)`` of every ``falsifies`` mark on a test.

    ``covers=[...]`` (optional) names the modules or ``module:function`` scopes the
    falsifier checks: ``pv mutate`` mutates them and runs this test only against
    mutants inside them.
    """
    found = []
    for mark in node.iter_markers("falsifies"):
        covers = mark.kwargs.get("covers", [])
        if (len(mark.args) != 1 or not isinstance(mark.args[0], str) or set(mark.kwargs) - {"mutants", "covers"}
                or not isinstance(covers, (list, tuple)) or not all(isinstance(c, str) for c in covers)):
            pytest.fail(f"{node.nodeid}: use @pytest.mark.falsifies('FT-...', mutants=[...], covers=[...])",
                        pytrace=False)
        found.append((mark.args[0], tuple(mark.kwargs.get("mutants", ()))))
    return found


def declared_falsifiers(contracts: Path) -> frozenset[str]:
    """The ``falsification_tests`` ids of every contract file in the folder ``contracts``."""
    ids = set()
    for path in sorted([*contracts.rglob("*.yaml"), *contracts.rglob("*.yml")]):
        try:
            documents = list(yaml.safe_load_all(read_input(path, MAX_BYTES).decode("utf-8")))
        except (InputError, UnicodeDecodeError, yaml.YAMLError):
            continue  # pv validate reports it; here it declares nothing
        for data in documents:
            tests = data.get("falsification_tests") if isinstance(data, dict) else None
            ids.update(str(entry.get("id")) for entry in tests or [] if isinstance(entry, dict))
    return frozenset(ids)


#: How a falsifier kills a mutant without help from the project: a failed assertion or pytest.fail.
BASE_KILLING_EXCEPTIONS: tuple[type[BaseException], ...] = (AssertionError, pytest.fail.Exception)


class FalsifierProtocol:
    """The hooks and the fixture of the protocol, registered only in a project that uses pv."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.contracts = activation.contracts_folder(config)
        self._declared: frozenset[str] | None = None
        self.outcomes = {"executed": 0, "skipped": 0}

    def mutants(self) -> dict[str, Mutant]:
        """Every mutant the project's conftests declare, by name."""
        found: dict[str, Mutant] = {}
        for result in self.config.hook.pytest_pv_mutants(config=self.config):
            values = result.values() if isinstance(result, Mapping) else result
            for entry in values:
                if entry.name in found and found[entry.name] is not entry:
                    raise pytest.UsageError(f"mutant {entry.name!r} is declared twice (pytest_pv_mutants)")
                found[entry.name] = entry
        return found

    def kill_exceptions(self) -> tuple[type[BaseException], ...]:
        extra = [error for result in self.config.hook.pytest_pv_kill_exceptions(config=self.config)
                 for error in result]
        return (*BASE_KILLING_EXCEPTIONS, *extra)

    def declared(self) -> frozenset[str]:
        if self._declared is None:
            self._declared = declared_falsifiers(self.contracts) if self.contracts else frozenset()
        return self._declared

    def binding_problem(self, ft_id: str, names: tuple[str, ...], known: Mapping[str, Mutant]) -> str | None:
        """Why a falsifier's marker is unusable (None when it is fine)."""
        if self.contracts is None:
            return (f"falsifier {ft_id}: no contracts folder to check its id against "
                    "(configure [tool.pv] contracts or pass --pv-contracts DIR)")
        if ft_id not in self.declared():
            return f"{ft_id} is not a falsification_tests id of any contract in {self.contracts}"
        if not names:
            return f"falsifier {ft_id} names no mutant: add mutants=[...] (declared by pytest_pv_mutants)"
        unknown = [name for name in names if name not in known]
        if unknown:
            return (f"falsifier {ft_id} names unknown mutants {unknown} "
                    f"(known: {', '.join(sorted(known)) or 'none: no conftest implements pytest_pv_mutants'})")
        return None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        binds = bindings(metafunc.definition)
        if not binds:
            return
        known = self.mutants()
        for ft_id, names in binds:
            problem = self.binding_problem(ft_id, names, known)
            if problem:
                pytest.fail(f"{metafunc.definition.nodeid}: {problem}", pytrace=False)
        if self.config.getoption("pv_vacuity"):
            names = list(dict.fromkeys(name for _, mutants in binds for name in mutants))
            params = [pytest.param(name, id=vacuity.mutant_id(name)) for name in [None, *names]]
            metafunc.parametrize("pv_mutant", params, indirect=True)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Tag every vacuity-run item with the key shared by the runs of its test."""
        for item in items:
            callspec = getattr(item, "callspec", None)
            if callspec is None or "pv_mutant" not in callspec.params:
                continue
            name = callspec.params["pv_mutant"]
            item.user_properties.append((vacuity.ITEM_PROPERTY, encode_property({
                "test": vacuity.run_key(item.nodeid, name),
                "falsifiers": [ft_id for ft_id, mutants in bindings(item) if name is None or name in mutants],
                "mutant": name,
            })))

    @pytest.fixture(autouse=True)
    def pv_mutant(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
        """The mutant applied to this run (None: unmutated); undone after the test.

        A module of the code under test (``[tool.pv] modules``) or of the project folder first
        imported while the mutant is applied may have bound it (``from pkg.core import f`` copies
        the mutated ``f``), which undoing the patch cannot reach: such modules are dropped from
        ``sys.modules`` after the run, to be imported afresh by whatever needs them next.
        """
        name = getattr(request, "param", None)
        if name is None:
            yield name
            return
        loaded = set(sys.modules)
        self.mutants()[name].patch(monkeypatch)
        yield name
        root = self.config.rootpath.resolve()
        packages = {prefix.split(".")[0] for prefix in activation.project(self.config).modules}
        for module in set(sys.modules) - loaded:
            if module.split(".")[0] in packages or project_source(sys.modules[module], root) is not None:
                _unload(module)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("pv_mutant") if callspec is not None else None
        executed = call.when == "call" and name is not None and not (
            call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception))
        killed = False
        if executed:
            failed = call.excinfo is not None
            killed = failed and call.excinfo.errisinstance(self.kill_exceptions())  # type: ignore[union-attr]
            detail = (
                _first_line(call.excinfo) if killed  # type: ignore[arg-type]
                else f"not a kill: the test crashed ({_first_line(call.excinfo)})" if failed  # type: ignore[arg-type]
                else "the falsifier passed with the mutant applied"
            )
            for ft_id, mutants in bindings(item):
                if name in mutants:
                    item.user_properties.append((vacuity.MUTANT_PROPERTY, encode_property({
                        "falsifier": ft_id, "mutant": name, "killed": killed,
                        "test": vacuity.run_key(item.nodeid, name), "detail": detail,
                        "crashed": _first_line(call.excinfo) if failed and not killed else None})))  # type: ignore[arg-type]
        report = yield
        if executed:
            if killed:
                report.outcome = "passed"
                report.longrepr = None
                report.sections.append(("pv vacuity", f"mutant {name} killed: {detail}"))
            elif call.excinfo is not None:
                report.outcome = "failed"
                report.longrepr = (f"mutant {name!r} of {item.nodeid}: {detail}; a kill is a failed assertion "
                                   "or a refusal by the code under test (pytest_pv_kill_exceptions)")
            else:
                report.outcome = "failed"
                report.longrepr = (f"vacuous: {item.nodeid} still passes with mutant {name!r} applied "
                                   f"({self.mutants()[name].description})")
        return report

    # --- a run in which every selected falsifier skipped is not a pass ---------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count falsifier runs (on the controller under xdist, from the workers' reports)."""
        if "falsifies" not in report.keywords:
            return
        if report.skipped:
            self.outcomes["skipped"] += 1
        elif report.when == "call":
            self.outcomes["executed"] += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Exit 5 (no tests) when falsifiers were selected but every one of them skipped."""
        if hasattr(session.config, "workerinput") or exitstatus != 0:
            return
        if self.outcomes["skipped"] and not self.outcomes["executed"]:
            session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"every selected falsifier skipped ({self.outcomes['skipped']}): nothing was falsified, "
                    "which is not a pass (exit 5)", red=True)


def _first_line(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    lines = str(excinfo.value).strip().splitlines()
    return f"{excinfo.typename}: {lines[0][:200]}" if lines else excinfo.typename


def _unload(name: str) -> None:
    """Drop module ``name`` from ``sys.modules`` and from its package's attributes (where ``from pkg import
    name`` would find it first)."""
    module = sys.modules.pop(name)
    parent, _, child = name.rpartition(".")
    if parent and getattr(sys.modules.get(parent), child, None) is module:
        delattr(sys.modules[parent], child)

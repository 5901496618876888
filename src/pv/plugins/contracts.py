"""pytest plugin: each contract obligation x engine is a test item.

``pytest contracts/`` or ``pytest path/to/contract.yaml`` collects, for every
obligation with a ``check:``, one item per engine, named
``<obligation-id>[<engine>]`` inside the contract file's node (node id
``contracts/<contract>.yaml::<obligation-id>[<engine>]``), so ``-k``, ``-n``
(xdist) and JUnit work as for any test.

Which YAML files are collected: those named on the command line, and, in a
project that uses pv (``[tool.pv]``, or ``--pv-contracts DIR``), those below its
contracts folder; of them, only files that load as contracts (a
``proof_obligations`` list). Any other YAML (profiles, test data, another
project's ``contracts/``) is left alone. A file below the contracts folder that
cannot be loaded gives one failing item, so a broken contract is never silently
dropped. Outside a pv project the plugin is inert.

Outcomes: ``proved`` and ``passed`` pass; ``refuted``, ``error``, ``vacuous`` and
``not-confirmed`` fail; an obligation without a check is collected as
``<id>[unchecked]`` and skipped with the reason, as is ``not-applicable`` (for
example a CUDA input on a machine without CUDA), and a not-confirmed run of one of
several engines (inconclusive: the obligation's other items decide it; never a
proof). A skip is never a pass. Each item appends ``("pv_verdict", <the verdict
as JSON text>)`` to its ``user_properties`` (JUnit XML shows it as JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pv._util.properties import encode_property
from pv.checks.compiling import (
    CheckUnit, CompiledCheck, compile_document, compile_unit, fails, format_verdict, inconclusive, is_contract,
    run_check,
)
from pv.checks.verdicts import Status, Verdict
from pv.evidence.build import VERDICT_PROPERTY
from pv.plugins import activation

YAML_SUFFIXES = (".yaml", ".yml")
UNCHECKED_ITEM = "unchecked"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pv-contracts", "contract obligation checks")
    group.addoption(
        "--pv-allow-module", action="append", default=[], metavar="PREFIX",
        help="also allow check bindings (implementations, constants) from modules under PREFIX",
    )
    group.addoption(
        "--pv-contracts", metavar="DIR", dest=activation.CONTRACTS_OPTION,
        help="collect the contracts of DIR (default: [tool.pv] contracts of the project; "
             "outside a pv project, none)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Put a pv project's folder on ``sys.path`` (as the ``pv`` command does) before pytest imports
    its conftest files, so that plain ``pytest falsifiers/`` imports the project's modules."""
    activation.project(early_config)


def pytest_configure(config: pytest.Config) -> None:
    if activation.active(config):
        config.addinivalue_line("markers", "gpu: needs a CUDA device")


def allowed_modules(config: pytest.Config) -> list[str]:
    """The project's ``[tool.pv] modules`` (seen from pytest's folders) and ``--pv-allow-module``."""
    return [*activation.project(config).modules, *config.getoption("pv_allow_module")]


def enforce_verdict(verdict: Verdict, engines: tuple[str, ...]) -> None:
    """Turn a verdict of an obligation checked by ``engines`` into a pytest outcome:
    pass, skip (unchecked, not-applicable, inconclusive beside other engines) or fail."""
    name = f"{verdict.contract}::{verdict.obligation}"
    if verdict.status in (Status.UNCHECKED, Status.NOT_APPLICABLE):
        pytest.skip(f"{name} {verdict.status.value}: {verdict.detail}")
    if inconclusive(verdict, engines):
        pytest.skip(f"{name} inconclusive ({verdict.engine} {verdict.status.value}: {verdict.detail}); "
                    f"not counted, the other engines decide; not a proof")
    if fails(verdict, engines):
        pytest.fail(format_verdict(verdict), pytrace=False)


def run_unit(unit: CheckUnit, engine: str | None, request: pytest.FixtureRequest) -> None:
    """What a module written by ``pv compile`` runs: check, record the verdict, enforce it."""
    compiled = compile_unit(unit)
    verdict = run_check(compiled, engine, allow=allowed_modules(request.config))
    request.node.user_properties.append((VERDICT_PROPERTY, encode_property(verdict.to_json())))
    enforce_verdict(verdict, compiled.engines)


def _named_on_command_line(path: Path, config: pytest.Config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        candidate = Path(str(arg).split("::")[0])
        if (candidate if candidate.is_absolute() else base / candidate).resolve() == path.resolve():
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in YAML_SUFFIXES:
        return None
    config = parent.config
    if not _named_on_command_line(file_path, config):
        folder = activation.contracts_folder(config) if activation.active(config) else None
        if folder is None or folder not in file_path.resolve().parents:
            return None
    return ContractFile.from_parent(parent, path=file_path)


class ContractFile(pytest.File):
    """A YAML file; it yields items only if it is a contract."""

    def collect(self) -> Any:
        from pv.contracts.loading import LoadError, load_document

        try:
            doc = load_document(self.path)
        except LoadError as err:
            yield LoadFailure.from_parent(self, name="load", message=err.finding.format_text())
            return
        if not is_contract(doc.data):
            return
        for compiled in compile_document(doc):
            for engine in compiled.engines or (UNCHECKED_ITEM,):
                yield ObligationItem.from_parent(
                    self, name=f"{compiled.obligation}[{engine}]", compiled=compiled, engine=engine
                )


class LoadFailure(pytest.Item):
    """A file below contracts/ that cannot be loaded: one failing item with the finding."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        pytest.fail(self.message, pytrace=False)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}: cannot be loaded"


class ObligationItem(pytest.Item):
    """One obligation checked by one engine."""

    def __init__(self, *, compiled: CompiledCheck, engine: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.compiled = compiled
        self.engine = engine
        if compiled.spec is not None and any(d.needs_cuda for d in compiled.spec.given.values()):
            self.add_marker(pytest.mark.gpu)
        #: the modules the check binds (its calls and constants): pv mutate counts a module's import-time
        #: code (a constant the check reads, a bindable list) as reached by this item (pv.mutation.tracing)
        bindings = [] if compiled.spec is None else [*compiled.spec.calls.values(), *compiled.spec.constants.values()]
        self.pv_binds = sorted({binding.partition(":")[0] for binding in bindings})

    def runtest(self) -> None:
        engine = None if self.engine == UNCHECKED_ITEM else self.engine
        verdict = run_check(self.compiled, engine, allow=allowed_modules(self.config))
        self.user_properties.append((VERDICT_PROPERTY, encode_property(verdict.to_json())))
        enforce_verdict(verdict, self.compiled.engines)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = max(self.compiled.unit.line - 1, 0)
        return self.path, line, f"{self.compiled.contract}::{self.compiled.obligation}[{self.engine}]"

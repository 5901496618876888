"""pytest plugin: gate reports from falsifier and obligation results.

Options (group "pv gate report"):

``--pv-gate-report PATH``
    write the run's evidence to PATH: a DSSE bundle (JSON Lines) of two in-toto
    statements, the test-result/v0.1 predicate and pv's gate report
    (``gate-report.schema.json`` of ``pv.schemas``), both naming the run's input
    files by sha256 (``pv.evidence.attestations``, ``pv.evidence.run_inputs``);
``--pv-gate-markdown PATH``
    write a short Markdown summary (for a CI job summary) to PATH;
``--pv-profile NAME|PATH``
    the hardware profile in use (default: detected from the machine);
``--pv-contracts DIR`` (of the contracts plugin)
    the contracts the report covers (default: ``[tool.pv] contracts`` of the project).

The envelopes are signed with this host's key when there is one (``pv key
generate``; ``$PV_KEY_DIR``, see ``pv.attest.keys``); the report inside carries
a checksum against accidental edits either way.

Fixtures: ``hw_profile`` (the active ``pv.evidence.profiles.Profile``) and ``evidence``
(``evidence(key, value, unit=None)`` records a measured value on the test).

xdist: the controller folds the phase reports it receives (they carry each
item's ``user_properties``), workers send what they collected and deselected
through ``workeroutput``; only the controller writes. A run that executed no
test is recorded as such and, when a report was requested, ends with exit
status 5 (no tests), never 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pv._util.errors import UserError
from pv._util.properties import encode_property
from pv.evidence.profiles import DeviceFacts, Profile, detect_profile, load_profile
from pv.evidence.build import (
    EVIDENCE_PROPERTY,
    FALSIFIES_PROPERTY,
    Collection,
    Selection,
    build_report,
    session_entry,
)
from pv.evidence.records import TestRecord, failure_message, fold
from pv.evidence.vacuity import ITEM_PROPERTY
from pv.plugins import activation

_PROFILE_KEY = pytest.StashKey[Profile]()
_WORKER_OUTPUT_KEY = "pv_gate_collection"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pv-report", "pv gate report")
    group.addoption("--pv-gate-report", metavar="PATH", dest="pv_gate_report",
                    help="write a JSON gate report of this run to PATH")
    group.addoption("--pv-gate-markdown", metavar="PATH", dest="pv_gate_markdown",
                    help="write a short Markdown summary of this run to PATH")
    group.addoption("--pv-profile", metavar="NAME|PATH", dest="pv_profile",
                    help="hardware profile in use (default: detected from the machine)")


def pytest_configure(config: pytest.Config) -> None:
    if not (config.getoption("pv_gate_report") or config.getoption("pv_gate_markdown")):
        return
    try:
        profile = active_profile(config)
    except UserError as err:
        raise pytest.UsageError(str(err)) from None
    controller = not hasattr(config, "workerinput")
    key = None
    if controller:
        from pv.attest.keys import load_host_key

        try:
            key = load_host_key()
        except UserError as err:
            raise pytest.UsageError(f"gate report: {err}") from None
    config.pluginmanager.register(GateReportPlugin(config, profile, controller, key), "pv-gate-report")


def active_profile(config: pytest.Config) -> Profile:
    """The profile named by ``--pv-profile``, or the one detected; resolved once per process."""
    if _PROFILE_KEY not in config.stash:
        name = config.getoption("pv_profile")
        config.stash[_PROFILE_KEY] = load_profile(name) if name else detect_profile()
    return config.stash[_PROFILE_KEY]


@pytest.fixture(scope="session")
def hw_profile(pytestconfig: pytest.Config) -> Profile:
    """The hardware profile in use (``--pv-profile``, or detected)."""
    try:
        return active_profile(pytestconfig)
    except UserError as err:
        pytest.fail(str(err), pytrace=False)


def evidence_entry(key: str, value: Any, unit: str | None = None) -> dict[str, Any]:
    """A measured value as a report records it; TypeError/ValueError for unusable input."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"evidence key must be a non-empty string, got {key!r}")
    if not isinstance(value, (bool, int, float, str)):
        raise TypeError(f"evidence {key!r}: value must be a number, a string or a bool, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # JSON has no NaN or infinity; keep the observation as text
    if unit is not None and not isinstance(unit, str):
        raise TypeError(f"evidence {key!r}: unit must be a string, got {type(unit).__name__}")
    return {"key": key, "value": value, "unit": unit}


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``evidence(key, value, unit=None)``: record a measured value in this test's report entry."""

    def record(key: str, value: Any, unit: str | None = None) -> None:
        request.node.user_properties.append((EVIDENCE_PROPERTY, encode_property(evidence_entry(key, value, unit))))

    return record


def _falsifier_ids(item: pytest.Item) -> list[str]:
    return list(dict.fromkeys(
        str(mark.args[0]) for mark in item.iter_markers("falsifies") if mark.args
    ))


def _shown_arg(arg: str, config: pytest.Config) -> str:
    """A command-line path relative to the rootdir when it lies inside it."""
    path, sep, rest = arg.partition("::")
    full = (config.invocation_params.dir / path).resolve()
    try:
        shown = full.relative_to(config.rootpath.resolve()).as_posix() or "."
    except ValueError:
        shown = path
    return shown + sep + rest


class GateReportPlugin:
    """Collects results on every process; the controller (or the only process) writes."""

    def __init__(self, config: pytest.Config, profile: Profile, controller: bool, key: Any = None) -> None:
        self.config = config
        self.profile = profile
        self.controller = controller
        #: this host's signing key (``pv.attest.keys.HostKey``), or None: the envelopes are unsigned
        self.key = key
        self.collection = Collection()
        self.records: dict[str, TestRecord] = {}
        self.started = time.monotonic()
        self.written: list[Path] = []
        self.report: dict[str, Any] | None = None
        self.contracts = self._load_contracts() if controller else []

    def _load_contracts(self) -> list[Any]:
        from pv.evidence.contracts import load_contracts

        option = self.config.getoption(activation.CONTRACTS_OPTION, default=None)
        folder = activation.contracts_folder(self.config)
        if folder is None or not folder.is_dir():
            if option:
                raise pytest.UsageError(f"--pv-contracts: {folder} is not a folder")
            return []
        try:
            return load_contracts(folder, self.config.rootpath)
        except UserError as err:
            raise pytest.UsageError(f"gate report: {err}") from None

    # --- collection (serial process or xdist worker) -----------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            ids = _falsifier_ids(item)
            if ids:
                item.user_properties.append((FALSIFIES_PROPERTY, encode_property(ids)))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            for ft_id in _falsifier_ids(item):
                self.collection.deselected[ft_id].add(item.nodeid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection.errors[report.nodeid or "."] = failure_message(report.longrepr)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collection.items = len(session.items)
        self.collection.files.update(str(item.path) for item in session.items)
        for item in session.items:
            for ft_id in _falsifier_ids(item):
                self.collection.selected[ft_id].add(item.nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist, on the controller: merge what a finished worker collected."""
        data = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if data is not None:
            self.collection.merge(Collection.from_json(data))

    # --- results (controller) ----------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.controller:
            record = self.records.setdefault(report.nodeid, TestRecord(report.nodeid))
            fold(record, report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.controller:
            self.config.workeroutput[_WORKER_OUTPUT_KEY] = self.collection.to_json()  # type: ignore[attr-defined]
            return
        self.report = self._build(int(exitstatus))
        self._write(self.report)
        if self.report["session"]["tests_executed"] == 0 and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED

    def _build(self, exitstatus: int) -> dict[str, Any]:
        from pv.attest.inputs import InputRule
        from pv.evidence.environment import collect_environment

        config = self.config
        selection = Selection(
            args=tuple(_shown_arg(a, config) for a in config.args),
            markexpr=config.getoption("markexpr", default=None) or None,
            keyword=config.getoption("keyword", default=None) or None,
        )
        records = list(self.records.values())
        inputs = self._inputs()
        environment = collect_environment(self._root(), InputRule.from_json(inputs["rule"]))
        device = environment["device"]
        facts = DeviceFacts(cuda=device["kind"] == "cuda", name=device["name"], unified=device["unified"])
        profile = {
            **self.profile.to_json(),
            "source": "option" if config.getoption("pv_profile") else "detected",
            "matches_device": self.profile.matches(facts),
        }
        session = session_entry(
            records, self.collection, selection,
            vacuity=bool(config.getoption("--pv-vacuity", default=False))
            or any(record.first(ITEM_PROPERTY) is not None for record in records),
            exitstatus=exitstatus,
            duration_s=time.monotonic() - self.started,
        )
        return build_report(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            records=records,
            collection=self.collection,
            contracts=self.contracts,
            selection=selection,
            session=session,
            profile=profile,
            environment=environment,
            inputs=inputs,
        )

    def _root(self) -> Path:
        return activation.project(self.config).root or self.config.rootpath

    def _inputs(self) -> dict[str, Any]:
        from pv.evidence.run_inputs import project_inputs, run_inputs

        found = project_inputs(activation.project(self.config), self._root(), activation.contracts_folder(self.config))
        return run_inputs(found, self._root(), map(Path, self.collection.files))

    def _write(self, report: dict[str, Any]) -> None:
        from pv._util.files import write_atomic
        from pv.attest.envelopes import write_bundle
        from pv.evidence.attestations import report_envelopes
        from pv.evidence.integrity import add_checksum
        from pv.evidence.markdown import session_markdown

        final = add_checksum(report)
        path = self.config.getoption("pv_gate_report")
        if path:
            self.written.append(write_bundle(path, report_envelopes(final, self.key)))
        markdown_path = self.config.getoption("pv_gate_markdown")
        if markdown_path:
            self.written.append(write_atomic(markdown_path, session_markdown(final)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.controller or self.report is None:
            return
        session = self.report["session"]
        terminalreporter.section("pv gate report")
        for path in self.written:
            terminalreporter.write_line(f"wrote {path}")
        if self.key is not None:
            terminalreporter.write_line(f"signed with key {self.key.key_id[:16]}... ({self.key.path})")
        else:
            terminalreporter.write_line("unsigned: no signing key on this host (`pv key generate`); "
                                        "`pv gate --release` refuses unsigned reports")
        terminalreporter.write_line(
            f"profile {self.report['profile']['name']}: {session['tests_executed']} tests executed, "
            f"{len(self.report['falsifiers'])} falsifiers, {len(self.report['obligations'])} obligations"
        )
        if session["tests_executed"] == 0:
            terminalreporter.write_line(
                "ZERO tests executed: this run is evidence of nothing; the exit status is not 0",
                red=True, bold=True,
            )

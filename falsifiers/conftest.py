"""Falsifier plumbing: binding checks, shared model files, and mutant runs under ``--pv-vacuity``.

A falsifier is a test marked ``@pytest.mark.falsifies("FT-...", mutants=[...])``
naming the planted defects of ``ft_mutants`` that it must detect. At collection
every falsifier must cite an id declared in a contract of ``contracts/`` and
name at least one registered mutant, else its module is a collection error.

With ``--pv-vacuity`` each falsifier is parametrized over ``[unmutated,
*mutants]``; the autouse fixture ``pv_mutant`` applies a mutant before the
test body (and undoes it after), and the outcome of a mutant run is inverted:
a falsifier that fails has killed the mutant (pass), one that still passes is
vacuous (fail). Each executed mutant run records ``("pv_mutant", {"falsifier",
"mutant", "killed", "test", "detail"})`` in its user_properties, and every item
of a vacuity run ``("pv_vacuity", {"test", "falsifiers", "mutant"})``; both
travel with the reports through xdist. ``--pv-vacuity-log PATH`` writes all
runs as JSON (read by ``pv vacuity``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

import ft_mutants
from distill.errors import DistillError
from pv._util.properties import encode_property
from pv.evidence import vacuity

@pytest.fixture(scope="session")
def vocab_dir(pytestconfig: pytest.Config) -> Path:
    """The real vocabulary files: ``$PV_SHARED_DIR/vocab`` or ``../shared/vocab`` of the repository."""
    path = Path(os.environ.get("PV_SHARED_DIR", pytestconfig.rootpath.parent / "shared")) / "vocab"
    if not path.is_dir():
        pytest.fail(f"real vocabulary files not found at {path} (set PV_SHARED_DIR)", pytrace=False)
    return path


#: name -> (preset, quantization, real vocabulary or None, seed, embedding rows, device that draws
#: the weights) of the models the falsifiers run on: the real row counts of Qwen2.5-7B/0.5B with the
#: real qwen2 tokens on tiny shapes; a tiny pair (a Q4_K_M teacher with 128 padding rows more than
#: its f32 student) and a bf16 teacher of the same shape; and, for the GPU, the real shapes of Qwen2.5-Coder-7B (Q4_K) and 0.5B (F32
#: file, trained in BF16), drawn on the GPU (minutes on a CPU, seconds there)
MODEL_FILES: dict[str, tuple[str, str, str | None, int, int, str]] = {
    "qwen2-teacher": ("tiny", "q4_k_m", "ggml-vocab-qwen2.gguf", 11, 152064, "cpu"),
    "qwen2-student": ("tiny", "f32", "ggml-vocab-qwen2.gguf", 12, 151936, "cpu"),
    "tiny-teacher": ("tiny", "q4_k_m", None, 21, 1152, "cpu"),
    "tiny-student": ("tiny", "f32", None, 22, 1024, "cpu"),
    "tiny-teacher-bf16": ("tiny", "bf16", None, 23, 1152, "cpu"),
    "7b-teacher": ("qwen2.5-coder-7b", "q4_k", None, 31, 152064, "cuda"),
    "0.5b-student": ("qwen2.5-coder-0.5b", "f32", None, 32, 151936, "cuda"),
}


def _write_model(path: Path, preset: str, quant: str, vocab: Path | None, seed: int, rows: int, device: str) -> None:
    from distill import synth
    from distill.qwen2_gguf import write_gguf

    if device == "cpu":
        synth.make_model_file(path, preset, quant, vocab, seed, rows)
        return
    # make_model_file draws on the CPU; the same file, with weights drawn on ``device``:
    config = dataclasses.replace(synth.PRESETS[preset], vocab_size=rows)
    tokenizer = synth.padded_tokenizer(synth.placeholder_tokenizer(), rows, "no vocabulary file")
    write_gguf(path, config, synth.synth_tensors(config, quant, seed, device), tokenizer)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``model_file(name)``: the GGUF file of ``MODEL_FILES[name]``, written once per run.

    Under xdist the workers of one run share the folder (a file lock lets one build each file);
    under ``pv mutate`` all its runs share ``$PV_MUTATE_CACHE``: the models are test inputs,
    built once by the unmutated code.
    """
    base = tmp_path_factory.getbasetemp()
    cache = os.environ.get("PV_MUTATE_CACHE")
    folder = Path(cache) if cache else (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
    folder = folder / "ft-models"
    folder.mkdir(exist_ok=True)

    def get(name: str) -> Path:
        preset, quant, vocab, seed, rows, device = MODEL_FILES[name]
        vocab_path = None if vocab is None else request.getfixturevalue("vocab_dir") / vocab
        path = folder / f"{name}.gguf"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                _write_model(path, preset, quant, vocab_path, seed, rows, device)
        return path

    return get


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pv-vacuity", "falsifier mutants")
    group.addoption("--pv-vacuity", action="store_true",
                    help="also run every falsifier once per mutant it names, with the mutant "
                         "applied; passes only where the mutant makes the falsifier fail")
    group.addoption("--pv-vacuity-log", metavar="PATH",
                    help="write the outcome of every vacuity run as JSON to PATH")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--pv-vacuity-log")
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


@functools.cache
def declared_falsifiers(contracts: Path) -> frozenset[str]:
    """The falsification_tests ids of every contract in the folder ``contracts``."""
    ids = set()
    for path in sorted(contracts.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        ids.update(str(entry.get("id")) for entry in data.get("falsification_tests") or [])
    return frozenset(ids)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    binds = bindings(metafunc.definition)
    declared = declared_falsifiers(metafunc.config.rootpath / "contracts")
    for ft_id, mutants in binds:
        problem = ft_mutants.binding_problem(ft_id, mutants)
        if ft_id not in declared:
            problem = f"{ft_id} is not a falsification_tests id of any contract in contracts/"
        if problem:
            pytest.fail(f"{metafunc.definition.nodeid}: {problem}", pytrace=False)
    if binds and metafunc.config.getoption("--pv-vacuity"):
        names = list(dict.fromkeys(name for _, mutants in binds for name in mutants))
        params = [pytest.param(name, id=vacuity.mutant_id(name)) for name in [None, *names]]
        metafunc.parametrize("pv_mutant", params, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
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
def pv_mutant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The mutant applied to this run (None: unmutated); undone after the test."""
    name = getattr(request, "param", None)
    if name is not None:
        ft_mutants.apply(name, monkeypatch)
    yield name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("pv_mutant") if callspec is not None else None
    executed = call.when == "call" and name is not None and not (
        call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception))
    if executed:
        failed = call.excinfo is not None
        killed = failed and call.excinfo.errisinstance(KILLING_EXCEPTIONS)
        detail = (
            _first_line(call.excinfo) if killed
            else f"not a kill: the test crashed ({_first_line(call.excinfo)})" if failed
            else "the falsifier passed with the mutant applied"
        )
        for ft_id, mutants in bindings(item):
            if name in mutants:
                item.user_properties.append((vacuity.MUTANT_PROPERTY, encode_property({
                    "falsifier": ft_id, "mutant": name, "killed": killed,
                    "test": vacuity.run_key(item.nodeid, name), "detail": detail})))
    report = yield
    if executed:
        if killed:
            report.outcome = "passed"
            report.longrepr = None
            report.sections.append(("pv vacuity", f"mutant {name} killed: {detail}"))
        elif call.excinfo is not None:
            report.outcome = "failed"
            report.longrepr = (f"mutant {name!r} of {item.nodeid}: {detail}; a kill is a failed assertion "
                               "or a refusal by the code under test (DistillError)")
        else:
            report.outcome = "failed"
            report.longrepr = (f"vacuous: {item.nodeid} still passes with mutant {name!r} applied "
                               f"({ft_mutants.MUTANTS[name].description})")
    return report


#: How a falsifier kills a mutant: a failed assertion (or pytest.fail), or the code under
#: test refusing with its own error. Any other exception is a crash, which proves nothing.
KILLING_EXCEPTIONS = (AssertionError, pytest.fail.Exception, DistillError)


def _first_line(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    lines = str(excinfo.value).strip().splitlines()
    return f"{excinfo.typename}: {lines[0][:200]}" if lines else excinfo.typename


# --- a run in which every selected falsifier skipped is not a pass --------------------------

_OUTCOMES = {"executed": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count falsifier runs (on the controller under xdist, from the workers' reports)."""
    if "falsifies" not in report.keywords:
        return
    if report.skipped:
        _OUTCOMES["skipped"] += 1
    elif report.when == "call":
        _OUTCOMES["executed"] += 1


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Exit 5 (no tests) when falsifiers were selected but every one of them skipped."""
    if hasattr(session.config, "workerinput") or exitstatus != 0:
        return
    if _OUTCOMES["skipped"] and not _OUTCOMES["executed"]:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"every selected falsifier skipped ({_OUTCOMES['skipped']}): nothing was falsified, "
                "which is not a pass (exit 5)", red=True)

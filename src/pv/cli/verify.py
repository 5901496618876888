"""The main job: validate the contracts, run their checks and the falsifiers, report, gate.

Steps: (1) `pv validate` of the contracts; (2) pytest in a subprocess over the
contracts (compiled obligation checks) and the falsifiers, each falsifier also
run against its mutants (--pv-vacuity); on a machine without CUDA the tests
marked `gpu` are deselected; (3) the evidence (a signed DSSE bundle of in-toto
statements naming every input file by sha256), JUnit XML and a Markdown summary
in the output folder; (4) the gate for the active profile, with the mutation
evidence of `[tool.pv] mutation_report` (or --mutation-report), printed as a
table; the exit status is its verdict (0 pass, 1 fail, 2 bad input).

The tests run in a clean room (:mod:`pv.attest.cleanroom`): a fresh export of
the commit (of the working tree as git lists it, when it has changes, and then
the evidence says `dirty`), with no bytecode written and none read from the
tree, so no untracked, ignored or stale compiled file can change a verdict, and
two runs at once never disturb each other.

The reports are written into a new folder beside the output folder, which
replaces it whole at the end (:mod:`pv._util.folders`): an interrupted or broken
run leaves the previous run's reports as they were, never an old decision next
to a new or missing report.

`pv verify` decides the contracts' requirements on the active profile only: a
CPU machine cannot show what a GPU must show. The release is decided by
`pv gate --release` over the reports of a CPU run and of the GPU runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pv.attest.cleanroom import CleanRoom


REPORT_NAME = "gate-report.intoto.jsonl"
JUNIT_NAME = "junit.xml"
SUMMARY_NAME = "summary.md"
GATE_NAME = "gate.json"
#: every file `pv verify` writes into its output folder
OUTPUT_NAMES = (REPORT_NAME, JUNIT_NAME, SUMMARY_NAME, GATE_NAME)
#: Signals that stop `pv verify`, and with it the whole process group of its pytest run.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Seconds the child's group has to end after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contracts", metavar="DIR", type=Path, default=None,
                        help="contracts to verify (default: [tool.pv] contracts of the project)")
    parser.add_argument("--falsifiers", metavar="PATH", type=Path, action="append", default=None,
                        help="falsifier tests to run; repeatable (default: [tool.pv] falsifiers)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="output folder (default: [tool.pv] reports of the project)")
    parser.add_argument("--profile", metavar="NAME|PATH", default=None,
                        help="hardware profile (default: detected from the machine)")
    parser.add_argument("--mutation-report", metavar="FILE", type=Path, default=None,
                        help="the mutation evidence (`pv mutate --format intoto`) the gate reads "
                             "(default: [tool.pv] mutation_report)")
    parser.add_argument("-n", "--workers", metavar="N", default=None,
                        help="run pytest with N xdist workers (a number or 'auto')")


def _existing(path: Path, where: str, folder: bool) -> Path:
    from pv._util.errors import UserError

    path = path.resolve()
    if not (path.is_dir() if folder else path.exists()):
        raise UserError(f"{where}: {path} is not {'a folder' if folder else 'a file or folder'}")
    return path


def validate_contracts(folder: Path) -> bool:
    """Print the findings of `pv validate` on ``folder``; whether it has no error."""
    from pv.contracts.findings import Severity
    from pv.contracts.validate import validate_paths

    result = validate_paths([folder])
    findings = [e.finding for e in result.load_errors] + list(result.findings)
    for finding in findings:
        print(finding.format_text())
    errors = sum(f.severity == Severity.ERROR for f in findings)
    print(f"validate: {len(result.documents)} contracts, {errors} errors, {len(findings) - errors} warnings")
    return errors == 0 and result.files > 0


def pytest_command(contracts: str, falsifiers: Sequence[str], out: Path, profile: str | None, gpu: bool,
                   workers: str | None) -> list[str]:
    """The pytest invocation of the main job, with paths relative to the project (``profile`` None:
    pytest detects it too)."""
    command = [
        sys.executable, "-m", "pytest", contracts, *falsifiers,
        "--pv-vacuity",
        f"--pv-contracts={contracts}",
        f"--pv-gate-report={out / REPORT_NAME}",
        f"--pv-gate-markdown={out / SUMMARY_NAME}",
        f"--junitxml={out / JUNIT_NAME}",
        "-q", "-p", "no:cacheprovider",
    ]
    if profile is not None:
        command += [f"--pv-profile={profile}"]
    if not gpu:
        command += ["-m", "not gpu"]
    if workers is not None:
        command += [f"--numprocesses={workers}"]
    return command


def run_child(command: Sequence[str], cwd: Path, *, env: dict[str, str] | None = None) -> tuple[int, int | None]:
    """(exit status, stopping signal or None) of ``command`` run in its own process group
    (``env``: its environment, default ours).

    A stop signal (:data:`STOP_SIGNALS`) sent to this process ends the child's whole group
    (pytest and its xdist workers): SIGTERM, then SIGKILL after :data:`STOP_GRACE_SECONDS`,
    so that nothing is left to write into the output folder later.
    """
    child = subprocess.Popen(list(command), cwd=cwd, env=env, start_new_session=True)
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopped:
            stopped.append(signum)
            _signal_group(child.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        started_stop: float | None = None
        while True:
            try:
                status = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stopped and started_stop is None:
                    started_stop = time.monotonic()
                if started_stop is not None and time.monotonic() - started_stop > STOP_GRACE_SECONDS:
                    _signal_group(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
        _signal_group(child.pid, signal.SIGKILL)  # workers that outlived their parent
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status, (stopped[0] if stopped else None)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


#: environment variables naming paths of the checkout, which a run in the clean room must not follow
_CHECKOUT_PATHS = ("PV_ROOT", "PV_CONTRACTS", "PV_FALSIFIERS", "PV_PROFILES", "PV_REPORTS", "PV_MUTATION_REPORT")


def _child_env(room: "CleanRoom") -> dict[str, str]:
    """The pytest run's environment: ours, without paths into the checkout, as a clean room wants it."""
    from pv.attest.cleanroom import python_environment

    return python_environment(room, {k: v for k, v in os.environ.items() if k not in _CHECKOUT_PATHS})


def _profile_argument(profile: str | None, root: Path, room: Path) -> str | None:
    """``--profile`` for the run in ``room``: a name as given, a file of the project moved into the room."""
    if profile is None or not Path(profile).exists():
        return profile
    path = Path(profile).resolve()
    try:
        return str(room / path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    from pv._util.errors import UserError
    from pv._util.folders import check_replaceable, staged_folder
    from pv.attest.cleanroom import clean_room
    from pv.attest.inputs import FolderTree, relative_input
    from pv.attest.keys import trusted_keys
    from pv.evidence.gate import decide, load_report
    from pv.evidence.profiles import detect_profile, load_profile
    from pv.evidence.contracts import load_contracts, shown_path
    from pv._util.files import write_atomic
    from pv.evidence.gate_output import format_json, format_text
    from pv.evidence.mutation_evidence import load_mutation_evidence
    from pv.evidence.run_inputs import project_inputs

    from pv._util.config import current

    config = current()
    if args.contracts is None or args.falsifiers is None or args.out is None:
        config.require("pv verify without --contracts, --falsifiers and --out")
    where = f"[tool.pv] of {config.source or config.root}"
    contracts = (_existing(args.contracts, "--contracts", True) if args.contracts is not None
                 else _existing(config.contracts, f"{where}: contracts", True))  # type: ignore[arg-type]
    falsifiers = ([_existing(path, "--falsifiers", False) for path in args.falsifiers] if args.falsifiers
                  else [_existing(path, f"{where}: falsifiers", False) for path in config.falsifiers])
    out = (args.out if args.out is not None else config.reports).resolve()  # type: ignore[union-attr]
    root = (config.root or Path.cwd()).resolve()
    contracts_rel = relative_input(contracts, root, "--contracts")
    falsifiers_rel = [relative_input(path, root, "--falsifiers") for path in falsifiers]
    evidence = args.mutation_report if args.mutation_report is not None else config.mutation_report
    check_replaceable(out, OUTPUT_NAMES)
    profile = load_profile(args.profile) if args.profile else detect_profile()
    trusted = trusted_keys()
    gpu = profile.device_class != "cpu"
    print(f"pv verify: profile {profile.name} ({'chosen' if args.profile else 'detected'}, "
          f"{profile.device_class}); output in {out}")

    print("\n== 1. validate contracts")
    if not validate_contracts(contracts):
        print("pv verify: FAIL: the contracts do not validate; nothing else was run")
        return 1

    selection = "all tests" if gpu else "tests not marked gpu"
    rule = project_inputs(config, root, contracts).rule
    with clean_room(root, rule) as room, staged_folder(out, OUTPUT_NAMES, "pv verify") as staging:
        source = room.source
        state = ("no git commit: run in place, no release can use it" if source.commit is None else
                 f"{'a dirty working tree' if source.dirty else 'clean'} at commit {source.commit[:12]}")
        print(f"\n== 2. obligations and falsifiers (pytest, {selection}, with mutants) in a clean room: {state}")
        command = pytest_command(contracts_rel, falsifiers_rel, staging,
                                 _profile_argument(args.profile, root, room.project), gpu, args.workers)
        sys.stdout.flush()
        status, stopped = run_child(command, room.project, env=_child_env(room))
        if stopped is not None:
            name = signal.Signals(stopped).name
            print(f"pv verify: stopped by {name}; pytest and its workers were ended, no gate decided; "
                  f"the previous reports in {out} are left as they were", file=sys.stderr)
            return 128 + stopped
        if not (staging / REPORT_NAME).is_file():
            raise UserError(f"pytest ended with status {status} and wrote no gate report; "
                            f"the previous reports in {out} are left as they were")

        print(f"\n== 3. gate for profile {profile.name}")
        report = dataclasses.replace(load_report(staging / REPORT_NAME, trusted), path=str(out / REPORT_NAME))
        for used in report.data["inputs"]["outside"]:
            print(f"pv verify: warning: the run used {used}, outside the project: no release can use this evidence")
        tree = FolderTree(room.project)
        shown = shown_path(evidence, root) if evidence is not None else None
        mutation = load_mutation_evidence(evidence, shown, trusted, tree)
        decision = decide([report], load_contracts(contracts, root), release=False, mutation=mutation)
        write_atomic(staging / GATE_NAME, format_json(decision))
    report_path = out / REPORT_NAME
    print(format_text(decision), end="")
    print(f"reports: {report_path}, {out / JUNIT_NAME}, {out / SUMMARY_NAME}, {out / GATE_NAME}")
    return 0 if decision.passed else 1

"""Synthetic projects for the tests of gate reports, `pv gate` and `pv verify`.

A project is a folder with ``contracts/`` (small contracts whose ``qa_gate``
requires falsifiers on profiles), ``profiles/`` (cpu and h100), and falsifier
test files. The falsifiers check a tiny ``effective_vocab`` and follow the
mutant protocol of ``--pv-vacuity`` (the ``pv_vacuity`` and ``pv_mutant`` user
properties) in miniature: each falsifier also runs once with a planted defect
and must fail there.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

# Imported here once: pytester's in-process runs drop the modules they import, torch's extension
# modules cannot be imported twice in one process, and re-importing hypothesis costs seconds.
import hypothesis  # noqa: F401
import pytest
import torch  # noqa: F401
import yaml

from pv.attest.cleanroom import CLEANROOM_ENV, clean_room
from pv.attest.envelopes import GATE_REPORT
from pv.attest.inputs import InputRule
from pv.attest.keys import KEY_DIR_ENV, HostKey, generate_key, publish
from pv.cli import main
from pv.evidence import environment
from pv.evidence.integrity import add_checksum
from pv.evidence.vacuity import ITEM_PROPERTY, MUTANT_PROPERTY

CPU_PROFILE = {
    "name": "cpu",
    "description": "any machine without CUDA",
    "device_class": "cpu",
    "detect": {"cuda": False},
    "memory_gib": 16,
    "bandwidth_gbs": 20,
    "thresholds": {},
}
H100_PROFILE = {
    "name": "h100",
    "description": "NVIDIA H100 SXM",
    "device_class": "discrete",
    "detect": {"device_name_contains": ["H100"], "unified": False},
    "memory_gib": 80,
    "bandwidth_gbs": 3350,
    "thresholds": {"FT-G-001": {"max_ratio": 1.25}},
}
#: what ``pv.evidence.environment.device_facts`` reports on an H100
H100_DEVICE = {
    "kind": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "capability": "9.0",
    "memory_bytes": 85_000_000_000,
    "unified": False,
    "driver": "550.54.15",
    "cuda_runtime": "12.4",
    "count": 1,
}

#: the code under test of every synthetic falsifier, and its planted defect
FALSIFIER_HEADER = f'''\
import os

import pytest


def effective_vocab(native, target):
    return target if target <= native else native


MUTANTS = {{"returns-native": lambda native, target: native}}


def run_falsifier(record_property, ft_id, mutant, check):
    """Run ``check`` on the code (mutant None) or on a mutant, which it must kill."""
    code = MUTANTS[mutant] if mutant else effective_vocab
    if mutant is None:
        check(code)
        return
    try:
        check(code)
    except AssertionError:
        record_property("{MUTANT_PROPERTY}", {{"falsifier": ft_id, "mutant": mutant, "killed": True}})
        return
    record_property("{MUTANT_PROPERTY}", {{"falsifier": ft_id, "mutant": mutant, "killed": False}})
    pytest.fail(f"vacuous: mutant {{mutant}} survived")
'''

#: a check that kills the mutant, and one that cannot (it only looks at equal sizes)
STRONG_CHECK = "assert code(152064, 151936) == 151936"
WEAK_CHECK = "assert code(10, 10) == 10"


def falsifier_source(
    ft_id: str,
    check: str = STRONG_CHECK,
    *,
    marks: Sequence[str] = (),
    mutants: bool = True,
    prelude: str = "",
) -> str:
    """One falsifier test of ``ft_id``: ``check`` over ``code``, after ``prelude`` statements."""
    name = "test_" + ft_id.lower().replace("-", "_")
    params = '[None, "returns-native"]' if mutants else "[None]"
    ids = '["unmutated", "mutant=returns-native"]' if mutants else '["unmutated"]'
    decorators = "".join(f"@pytest.mark.{mark}\n" for mark in marks)
    body = "".join(f"    {line}\n" for line in prelude.splitlines() if line.strip())
    if mutants:  # as under --pv-vacuity, every run of the test says which mutant it carries
        body = (f"    record_property({ITEM_PROPERTY!r}, "
                f"{{'test': {ft_id!r}, 'falsifiers': [{ft_id!r}], 'mutant': mutant}})\n") + body
    return (
        f"\n\n@pytest.mark.falsifies({ft_id!r}, mutants=['returns-native'])\n{decorators}"
        f"@pytest.mark.parametrize('mutant', {params}, ids={ids})\n"
        f"def {name}(mutant, record_property):\n{body}"
        f"    def check(code):\n        {check}\n"
        f"    run_falsifier(record_property, {ft_id!r}, mutant, check)\n"
    )


def contract_text(
    falsifiers: Iterable[str],
    require: dict[str, list[str]],
    obligations: Sequence[str] = ("OB-INV-001",),
    checks: dict[str, str] | None = None,
    decides: dict[str, str] | None = None,
) -> str:
    """A small contract listing ``falsifiers``, requiring ``require`` (id -> profiles).

    ``checks``: obligation id -> ``expect`` expression over an int ``x`` in [0, 5]
    (an executable check, proved or refuted by exhaustive enumeration);
    ``decides``: falsifier id -> the obligation it decides (its ``obligation`` field).
    """
    decides = decides or {}
    checks = checks or {}
    listed = list(obligations) + [ob for ob in checks if ob not in obligations]
    data: dict[str, Any] = {
        "metadata": {"version": "1.0.0", "description": "a synthetic contract for gate tests"},
        "equations": {"effective_vocab": {"formula": "min(native, target)"}},
        "proof_obligations": [
            {"id": ob, "type": "invariant", "property": "p", "formal": "f"}
            | ({"check": {"given": {"x": {"int": {"min": 0, "max": 5}}}, "expect": checks[ob]}} if ob in checks else {})
            for ob in listed
        ],
        "falsification_tests": [
            {"id": ft, "rule": "r", "prediction": "p", "if_fails": "x"}
            | ({"obligation": decides[ft]} if ft in decides else {})
            for ft in falsifiers
        ],
        "qa_gate": {
            "id": "F-SYN-001",
            "name": "synthetic gate",
            "require": [{"falsifier": ft, "profiles": profiles} for ft, profiles in require.items()],
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


#: the project's side of the falsifier protocol: its one mutant (the falsifiers apply it themselves)
CONFTEST = """\
import sys

from pv.plugins.falsifiers import Mutant


def _returns_native(monkeypatch):
    for module in list(sys.modules.values()):
        if hasattr(module, "effective_vocab") and hasattr(module, "run_falsifier"):
            monkeypatch.setattr(module, "effective_vocab", lambda native, target: native)


def pytest_pv_mutants(config):
    return [Mutant("returns-native", "effective_vocab returns the native size", _returns_native)]
"""
#: a pv project: its pyproject.toml names the contracts and profile folders
PYPROJECT = '[tool.pv]\ncontracts = "contracts"\nprofiles = ["profiles"]\n'


def write_project(
    root: Path,
    contracts: dict[str, str],
    tests: dict[str, str],
) -> None:
    """Write ``pyproject.toml``, ``contracts/<name>.yaml``, the test files, a conftest and ``profiles/``."""
    if contracts and not (root / "pyproject.toml").exists():
        (root / "pyproject.toml").write_text(PYPROJECT)
    if tests and not (root / "conftest.py").exists():
        (root / "conftest.py").write_text(CONFTEST)
    (root / "contracts").mkdir(exist_ok=True)
    for name, text in contracts.items():
        (root / "contracts" / f"{name}.yaml").write_text(text)
    (root / "profiles").mkdir(exist_ok=True)
    for profile in (CPU_PROFILE, H100_PROFILE):
        (root / "profiles" / f"{profile['name']}.yaml").write_text(yaml.safe_dump(profile))
    for name, body in tests.items():
        (root / name).write_text(FALSIFIER_HEADER + body)


def _envelopes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _payload(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))


def read_statements(path: Path) -> list[dict[str, Any]]:
    """The in-toto statements of an evidence bundle, decoded without any check."""
    return [_payload(e) for e in _envelopes(path)]


def read_report(path: Path) -> dict[str, Any]:
    """The gate report inside an evidence bundle (decoded without any check)."""
    return next(s["predicate"] for s in read_statements(path) if s["predicateType"] == GATE_REPORT)


def rewrite_report(path: Path, data: dict[str, Any], *, reseal: bool, key: HostKey | None) -> None:
    """Put ``data`` in place of the gate report of the bundle at ``path``.

    ``reseal``: recompute the checksum and sign the statement again with ``key``, as
    the writer would; otherwise the report's envelope keeps its old signatures.
    """
    def replace(text: str) -> str:
        found = json.loads(text)
        found["predicate"] = add_checksum(data) if reseal else data
        return json.dumps(found, sort_keys=True)

    rewrite_payload(path, replace, key, keep_signatures=not reseal)


def rewrite_payload(path: Path, change: Callable[[str], str], key: HostKey | None, *,
                    keep_signatures: bool = False) -> None:
    """Apply ``change`` to the text of the gate report's statement in the bundle at ``path``, and sign
    the new payload with ``key`` (None: no signature), or keep the old signatures."""
    from securesystemslib.dsse import Envelope

    from pv.attest.envelopes import PAYLOAD_TYPE, signer

    envelopes = _envelopes(path)
    for index, found in enumerate(envelopes):
        text = base64.b64decode(found["payload"]).decode("utf-8")
        if json.loads(text)["predicateType"] != GATE_REPORT:
            continue
        payload = change(text).encode("utf-8")
        if keep_signatures:
            found["payload"] = base64.b64encode(payload).decode("ascii")
            continue
        wrapped = Envelope(payload, PAYLOAD_TYPE, {})
        if key is not None:
            wrapped.sign(signer(key))
        envelopes[index] = wrapped.to_dict()
    path.write_text("".join(json.dumps(e) + "\n" for e in envelopes))


_TIME_KEYS = ("created", "duration_s", "checksum", "signature")


def without_times(value: Any) -> Any:
    """``value`` with every time (and the digest over them) left out."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in _TIME_KEYS}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


#: FT-A-001 must pass on cpu, FT-G-001 (a gpu test) on h100
REQUIRE = {"FT-A-001": ["cpu"], "FT-G-001": ["h100"]}
CPU_ONLY = ["-m", "not gpu"]
GPU_ONLY = ["-m", "gpu"]


class GitProject:
    """A synthetic project under git, its reports, and `pv gate` over them.

    The profiles pv knows there are its built-in ones with the project's layers
    (``[tool.pv] profiles = ["profiles"]``), and the gate trusts the public key
    in its ``keys/`` folder; the host key beside the project (outside its
    repository) signs every report unless a report is asked for unsigned.
    """

    def __init__(
        self,
        pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch,
        cpu_check: str = STRONG_CHECK,
        mutants: bool = True,
        checks: dict[str, str] | None = None,
        require: dict[str, list[str]] = REQUIRE,
        decides: dict[str, str] | None = None,
    ) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.root = pytester.path
        # the project's own [tool.pv] profiles decide the known profiles, whatever the caller's environment
        for name in ("PV_ROOT", "PV_PROFILES"):
            monkeypatch.delenv(name, raising=False)
        self.key_dir = self.root.parent / f"{self.root.name}-host-key"
        self.trusted = self.root / "keys"
        monkeypatch.setenv(KEY_DIR_ENV, str(self.key_dir))
        self.key = generate_key(self.key_dir)
        publish(self.key, self.trusted)
        tests = falsifier_source(
            "FT-A-001", cpu_check, mutants=mutants,
            prelude="if os.environ.get('SYN_SKIP') == '1':\n    pytest.skip('no test data on this host')\n"
            "assert os.environ.get('SYN_BREAK_CPU') != '1', 'the truncation is off by one'",
        ) + falsifier_source(
            "FT-G-001", marks=["gpu"],
            prelude="assert os.environ.get('SYN_BREAK_GPU') != '1', 'peak memory over the threshold'",
        )
        contract = contract_text(list(REQUIRE), require, checks=checks, decides=decides)
        write_project(self.root, {"syn-v1": contract}, {"test_ft_syn.py": tests})
        pytester.makeini("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
        (self.root / ".gitignore").write_text("reports/\n__pycache__/\n")
        self.git("init", "-q")
        self.commit("synthetic")

    def clone(self, folder: Path) -> "GitProject":
        """A copy of this project (its git history included) in ``folder``, signed by the same host key."""
        import copy
        import shutil

        shutil.copytree(self.root, folder, symlinks=True)
        other = copy.copy(self)
        other.root = folder
        other.trusted = folder / "keys"
        return other

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True)

    def commit(self, message: str) -> None:
        """Commit everything (whatever the user's git configuration)."""
        self.git("add", "-A")
        identity = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
        self.git(*identity, "commit", "-q", "-m", message)

    def report(
        self,
        name: str,
        profile: str | Path,
        *args: str,
        paths: Sequence[str] = ("test_ft_syn.py",),
        device: dict | None = None,
        key_dir: Path | None = None,
        cleanroom: bool = True,
        **env: str,
    ) -> Path:
        """Run pytest on ``paths`` and write the evidence bundle ``reports/<name>.json``.

        ``profile``: a profile of the project by name, or a profile file;
        ``device``: pretend to run on it; ``key_dir``: sign with the key there
        (an empty folder: unsigned) instead of the project's host key;
        ``cleanroom``: run in a clean-room export of the project, as `pv verify` does
        (False: in the working tree, as a plain pytest run does);
        ``env``: environment variables for the run.
        """
        out = self.root / "reports" / f"{name}.json"
        profile_file = self.profile_path(profile)
        with self.monkeypatch.context() as patch, clean_room(self.root, InputRule(files=tuple(paths))) as room:
            if device is not None:
                patch.setattr(environment, "device_facts", lambda: dict(device))
            if key_dir is not None:
                patch.setenv(KEY_DIR_ENV, str(key_dir))
            for key, value in env.items():
                patch.setenv(key, value)
            if cleanroom:  # what pv verify gives its pytest run, in this process
                patch.chdir(room.project)
                patch.setenv(CLEANROOM_ENV, json.dumps(room.source.to_json()))
                patch.setattr(sys, "dont_write_bytecode", True)
                patch.setattr(sys, "pycache_prefix", str(room.pycache))
                if profile_file.is_relative_to(self.root):
                    profile_file = room.project / profile_file.relative_to(self.root)
            self.pytester.runpytest(
                "-p", "no:cacheprovider", *paths,
                f"--pv-gate-report={out}", f"--pv-profile={profile_file}", *args,
            )
        assert out.is_file()
        return out

    def profile_path(self, profile: str | Path) -> Path:
        return profile if isinstance(profile, Path) else self.root / "profiles" / f"{profile}.yaml"

    def cpu(self, paths: Sequence[str] = ("test_ft_syn.py",), name: str = "cpu", **env: str) -> Path:
        return self.report(name, "cpu", *CPU_ONLY, paths=paths, **env)

    def gpu(self, **env: str) -> Path:
        return self.report("h100", "h100", *GPU_ONLY, device=H100_DEVICE, **env)

    def edit(
        self, path: Path, change: Callable[[dict], None], *, reseal: bool = False, key: HostKey | None = None
    ) -> Path:
        """Apply ``change`` to the report at ``path``.

        ``reseal``: recompute the checksum and sign again with ``key`` (default:
        the project's host key), as if the writer had made it.
        """
        data = read_report(path)
        change(data)
        rewrite_report(path, data, reseal=reseal, key=key or self.key)
        return path

    def gate(self, capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
        """`pv gate` over this project's contracts, in its folder, trusting its ``keys/``."""
        capsys.readouterr()
        with self.monkeypatch.context() as patch:
            patch.chdir(self.root)
            code = main(["gate", "--contracts", str(self.root / "contracts"), "--trusted-keys", str(self.trusted),
                         *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

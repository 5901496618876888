"""The gate's false passes, each made from genuine runs: none of them passes any more.

Each test builds what an adversary with the public code could make (a renamed
or loosened profile, a report re-labelled as a GPU run and sealed again, a
repeated entry) and shows the gate refusing it; the same test against the
old gate would pass the forged evidence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from gate_testing import CPU_ONLY, CPU_PROFILE, H100_DEVICE, GitProject, read_report, rewrite_payload, rewrite_report
from pv._util.resources import builtin_profiles
from pv.evidence.integrity import add_checksum
from pv.evidence.profiles import load_profile
from pv.attest.keys import generate_key

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    return GitProject(pytester, monkeypatch)


def _profile_file(folder: Path, **changes: object) -> Path:
    """A copy of the cpu profile with ``changes``, written to ``folder/<name>.yaml``."""
    data = {**CPU_PROFILE, **changes}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_renamed_profile_that_pv_does_not_know_is_no_evidence(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = _profile_file(project.root.parent / "elsewhere", name="cpu-copy")
    report = project.report("renamed", renamed, *CPU_ONLY)
    code, out, _ = project.gate(capsys, report)
    assert code == 1, out
    # pv's built-in profiles and the project's layers (cpu, h100): not a folder outside them
    assert f"{report}: refused: profile 'cpu-copy' is not a profile pv knows (known: cpu, gb10, h100, h200)" in out
    assert "- no evidence: no accepted report covers this version of the contract" in out
    assert "PASS" not in out.replace("1 gates pass", "")


def test_a_renamed_profile_that_pv_knows_decides_nothing_so_it_fails(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    known = _profile_file(project.root / "profiles", name="cpu-copy")
    project.commit("a profile no requirement names")
    code, out, _ = project.gate(capsys, project.report("renamed", known, *CPU_ONLY))
    assert code == 1, out
    assert ("- no evidence: no requirement of this gate names profile(s) cpu-copy (they name cpu, h100), "
            "so these reports decide nothing of it") in out
    assert "requirement: FT-A-001 on cpu: deferred to the release gate" in out


def test_a_loosened_profile_under_a_known_name_is_refused(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    loose = _profile_file(project.root.parent / "loose", thresholds={"FT-A-001": {"max_ratio": 1000.0}})
    report = project.report("loose", loose, *CPU_ONLY)
    recorded = read_report(report)["profile"]["sha256"]
    # the digest of the layers the run used: pv's built-in cpu profile, then the loosened file
    assert recorded == _layered_sha256(builtin_profiles()["cpu"].read_bytes(), loose.read_bytes())
    code, out, _ = project.gate(capsys, report)
    assert code == 1, out
    assert f"{report}: refused: made under an edited profile cpu: its sha256 is {recorded[:16]}..." in out
    assert f"pv's profile cpu (pv:profiles/cpu.yaml + {project.root / 'profiles' / 'cpu.yaml'})" in out
    assert "- no evidence: no accepted report covers this version of the contract" in out


def _layered_sha256(*layers: bytes) -> str:
    """The content hash of a profile made of ``layers``: each layer's length (8 bytes) and bytes."""
    digest = hashlib.sha256()
    for raw in layers:
        digest.update(len(raw).to_bytes(8, "big") + raw)
    return digest.hexdigest()


def _as_h100(project: GitProject):
    """Relabel a report as made under h100 exactly as pv knows it (built-in and the project's layer)."""
    identity = {**load_profile("h100").to_json(), "matches_device": True}
    assert identity["sha256"] == _layered_sha256(
        builtin_profiles()["h100"].read_bytes(), (project.root / "profiles" / "h100.yaml").read_bytes())
    return lambda data: data["profile"].update(identity)


def test_a_cpu_report_relabelled_as_h100_and_sealed_again_is_refused(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    # the label alone, re-signed by a host key the project trusts: the recorded device still says cpu
    relabelled = project.edit(project.cpu(name="relabelled"), _as_h100(project), reseal=True)
    code, out, _ = project.gate(capsys, "--release", project.cpu(), relabelled)
    assert code == 1, out
    assert f"{relabelled}: refused: claims profile h100 (discrete: a CUDA device named like H100" in out
    assert "(cpu); its results count for no profile" in out
    assert "- FT-G-001: no evidence: required on h100" in out


def test_a_relabelled_report_with_a_forged_device_needs_a_trusted_signature(
    project: GitProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    label = _as_h100(project)

    def forge(data: dict) -> None:
        label(data)
        data["environment"]["device"] = dict(H100_DEVICE)

    cpu = project.cpu()
    # the checksum recomputed by hand: the host's signature no longer matches
    unsigned_seal = project.edit(project.cpu(name="forged"), forge)
    rewrite_report(unsigned_seal, add_checksum(read_report(unsigned_seal)), reseal=False, key=None)
    code, _, err = project.gate(capsys, "--release", cpu, unsigned_seal)
    assert code == 2
    assert "does not match the payload: the evidence was changed after it was signed" in err
    # re-signed with the forger's own key: not a key the project trusts
    forger = generate_key(tmp_path / "forger")
    resigned = project.edit(project.cpu(name="resigned"), forge, reseal=True, key=forger)
    code, out, _ = project.gate(capsys, "--release", cpu, resigned)
    assert code == 1, out
    assert f"{resigned}: refused: signed by key {forger.key_id[:16]}..., which is not trusted" in out
    assert "- FT-G-001: no evidence: required on h100" in out


def test_a_repeated_falsifier_entry_cannot_hide_a_failure(
    project: GitProject, capsys: pytest.CaptureFixture[str]
) -> None:
    passing = next(f for f in read_report(project.cpu(name="good"))["falsifiers"] if f["id"] == "FT-A-001")
    broken = project.cpu(name="broken", SYN_BREAK_CPU="1")
    code, out, _ = project.gate(capsys, broken)
    assert code == 1 and "- FT-A-001: failed on cpu" in out  # the genuine report fails

    def hide(data: dict) -> None:
        data["falsifiers"].insert(0, passing)

    forged = project.edit(broken, hide, reseal=True)
    code, out, err = project.gate(capsys, forged)
    assert code == 2, out
    assert "not a valid gate report" in err
    assert "$.falsifiers[1]: repeats FT-A-001 of $.falsifiers[0]" in err


def test_a_repeated_obligation_or_json_key_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = GitProject(pytester, monkeypatch, checks={"OB-TRUE": "x + 0 == x"})
    report = project.cpu(paths=("contracts", "test_ft_syn.py"))
    forged = project.edit(report, lambda d: d["obligations"].append(d["obligations"][-1]), reseal=True)
    code, _, err = project.gate(capsys, forged)
    assert code == 2 and "repeats syn-v1 OB-TRUE of $.obligations[" in err
    # a payload with a repeated key, signed by the trusted host's key: the parser still refuses it
    rewrite_payload(report, lambda text: text.replace('"falsifiers": [', '"falsifiers": [], "falsifiers": [', 1),
                    project.key)
    code, _, err = project.gate(capsys, report)
    assert code == 2 and "the key 'falsifiers' appears twice in one object" in err

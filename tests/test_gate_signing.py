"""Signed gate reports: the host key signs, `pv gate --release` accepts only trusted signatures."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from gate_testing import GPU_ONLY, H100_DEVICE, GitProject, read_statements
from pv.attest.envelopes import GATE_REPORT, TEST_RESULT, SignatureStatus, read_bundle
from pv.attest.keys import (
    PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, RETIRED_DIR, SigningError, generate_key, load_host_key, trusted_keys,
)
from pv.cli import main

pytest_plugins = ["pytester"]

#: the repository root, for its committed sample report and trusted keys
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    return GitProject(pytester, monkeypatch)


def test_the_report_plugin_signs_its_envelopes_with_the_host_key(project: GitProject) -> None:
    path = project.cpu()
    assert [s["predicateType"] for s in read_statements(path)] == [TEST_RESULT, GATE_REPORT]
    public = SSlibKey.from_crypto(project.key.private.public_key(), keyid=project.key.key_id)
    lines = path.read_text().splitlines()
    for line in lines:  # securesystemslib's own DSSE verifier, not pv's code
        assert list(Envelope.from_dict(json.loads(line)).verify([public], 1)) == [project.key.key_id]
    tampered = json.loads(lines[1])
    payload = base64.b64decode(tampered["payload"]).replace(b'"passed"', b'"failed"', 1)
    tampered["payload"] = base64.b64encode(payload).decode("ascii")
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([public], 1)


def test_release_refuses_unsigned_reports_and_accepts_signed_ones(
    project: GitProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_key = tmp_path / "no-key"
    unsigned_cpu = project.cpu(name="unsigned-cpu", key_dir=no_key)
    unsigned_gpu = project.report("unsigned-gpu", "h100", *GPU_ONLY, device=H100_DEVICE, key_dir=no_key)
    assert all(json.loads(line)["signatures"] == [] for line in unsigned_cpu.read_text().splitlines())
    code, out, _ = project.gate(capsys, "--release", unsigned_cpu, unsigned_gpu)
    assert code == 1, out
    for report in (unsigned_cpu, unsigned_gpu):
        assert f"{report}: refused: unsigned: a release accepts only reports signed by a trusted key" in out
    code, out, _ = project.gate(capsys, unsigned_cpu)  # a gate for one profile notes it, and decides
    assert code == 0, out
    assert f"{unsigned_cpu}: profile cpu" in out and "unsigned" in out
    code, out, _ = project.gate(capsys, "--release", project.cpu(), project.gpu())
    assert code == 0, out
    assert f"signed by trusted key {project.key.key_id[:16]}" in out
    assert ": PASS (1 of 1 gates pass)" in out


def test_release_refuses_a_key_the_project_does_not_trust(
    project: GitProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = generate_key(tmp_path / "other-host")
    cpu = project.cpu(name="other-host", key_dir=other.path.parent)
    code, out, _ = project.gate(capsys, "--release", cpu, project.gpu())
    assert code == 1
    assert f"{cpu}: refused: signed by key {other.key_id[:16]}..., which is not trusted (1 trusted key(s) from " in out
    code, out, _ = project.gate(capsys, "--release", "--trusted-keys", other.path.parent / PUBLIC_KEY_FILE,
                                cpu, project.gpu())
    assert code == 0, out


def test_key_generate_writes_a_private_key_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "keys-of-this-host"
    trusted = tmp_path / "project-keys"
    assert main(["key", "generate", "--key-dir", str(folder), "--publish", str(trusted)]) == 0
    out = capsys.readouterr().out
    key = load_host_key(folder)
    assert key is not None and f"key id: {key.key_id}" in out
    assert stat.S_IMODE((folder / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    assert list(trusted_keys([trusted]).keys) == [key.key_id]
    assert main(["key", "generate", "--key-dir", str(folder)]) == 2
    assert "a signing key exists already; `pv key rotate` replaces it" in capsys.readouterr().err


def test_key_rotate_retires_the_old_key_and_replaces_it_among_the_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, trusted = tmp_path / "host", tmp_path / "project-keys"
    assert main(["key", "rotate", "--key-dir", str(folder)]) == 2
    assert "no signing key to rotate" in capsys.readouterr().err
    old = generate_key(folder)
    assert main(["key", "generate", "--key-dir", str(tmp_path / "other"), "--publish", str(trusted)]) == 0
    main(["key", "show", "--key-dir", str(folder)])
    assert main(["key", "rotate", "--key-dir", str(folder), "--publish", str(trusted)]) == 0
    new = load_host_key(folder)
    assert new is not None and new.key_id != old.key_id
    assert (folder / RETIRED_DIR / f"{old.key_id[:16]}.pub").is_file()
    ids = set(trusted_keys([trusted]).keys)
    assert new.key_id in ids and old.key_id not in ids and len(ids) == 2
    assert f"key {old.key_id[:16]}... retired" in capsys.readouterr().out


def test_a_key_inside_a_repository_or_readable_by_others_is_refused(
    project: GitProject, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["key", "generate", "--key-dir", str(project.root / "secrets")]) == 2
    assert "a private key must live outside any repository" in capsys.readouterr().err
    assert not (project.root / "secrets").exists()
    os.chmod(project.key.path, 0o644)
    with pytest.raises(SigningError, match="has mode 0644, so other users can read it"):
        load_host_key(project.key_dir)
    result = project.pytester.runpytest("-p", "no:cacheprovider", "test_ft_syn.py",
                                        f"--pv-gate-report={tmp_path / 'r.json'}",
                                        f"--pv-profile={project.profile_path('cpu')}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (tmp_path / "r.json").exists()


def test_the_committed_cpu_sample_is_signed_by_the_key_beside_it() -> None:
    sample = REPO / "reports" / "gate" / "cpu"
    found = read_bundle(sample / "gate-report.intoto.jsonl", trusted_keys([sample]))
    assert [a.signature.status for a in found] == [SignatureStatus.TRUSTED] * 2, found[0].signature.detail
    found = read_bundle(sample / "gate-report.intoto.jsonl", trusted_keys([REPO / "keys"]))
    assert [a.signature.status for a in found] == [SignatureStatus.UNKNOWN_KEY] * 2

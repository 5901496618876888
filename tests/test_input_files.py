"""The one way pv opens an input: a regular file within its size cap, checked before a byte
is read, opened so that a FIFO cannot block; and every reader of pv goes through it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pv._util import config
from pv._util.files import InputError, open_input, read_input, sha256_of
from pv.contracts.loading import LoadError, load_document
from pv.attest.inputs import FolderTree
from pv.evidence.mutation_evidence import load_mutation_evidence
from pv.evidence.profiles import ProfileError, load_profile
from pv.attest.keys import SigningError, TrustedKeys, load_host_key, trusted_keys


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``os.open`` for reading, by path and flags; one that could block on a FIFO fails at once
    (the test fails instead of hanging)."""
    seen: list[tuple[str, int]] = []
    real_open = os.open

    def watched(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR) == 0:
            seen.append((os.fsdecode(path), flags))
            assert flags & os.O_NONBLOCK, f"{path} opened for reading without O_NONBLOCK: a FIFO would block"
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched)
    return seen


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a link to /dev/zero, a folder, a sparse file of 2 GiB, each named as a key, profile or report."""
    found = {"fifo": tmp_path / "fifo", "zero": tmp_path / "zero", "folder": tmp_path / "folder",
             "huge": tmp_path / "huge"}
    os.mkfifo(found["fifo"])
    found["zero"].symlink_to("/dev/zero")
    found["folder"].mkdir()
    with open(found["huge"], "wb") as handle:
        handle.truncate(2 * 2**30)
    return found


@pytest.mark.parametrize(("kind", "words"), [("fifo", "is a FIFO"), ("zero", "is a character device"),
                                             ("folder", "is a folder"), ("huge", "over the limit of 1000 bytes")])
def test_read_input_refuses_what_is_not_a_small_regular_file_before_reading(
        hostile: dict[str, Path], opened: list[tuple[str, int]], kind: str, words: str) -> None:
    with pytest.raises(InputError) as caught:
        read_input(hostile[kind], 1000)
    assert str(caught.value).startswith(str(hostile[kind])) and words in str(caught.value)
    assert caught.value.too_large == (kind == "huge") and not caught.value.missing
    assert opened == [], "the path was opened although stat had refused it"


def test_a_fifo_swapped_in_after_the_check_neither_blocks_nor_is_read(
        hostile: dict[str, Path], opened: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    regular = os.stat(__file__)
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: regular)  # the check saw a file, then it was swapped
    with pytest.raises(InputError, match="is a FIFO"):
        open_input(hostile["fifo"], None)
    assert [path for path, _ in opened] == [str(hostile["fifo"])]


def test_read_input_reads_a_file_within_its_cap_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"x" * 1000)
    assert read_input(path, 1000) == b"x" * 1000
    with pytest.raises(InputError, match="over the limit of 999 bytes"):
        read_input(path, 999)
    with pytest.raises(InputError) as caught:
        read_input(tmp_path / "absent", 10)
    assert caught.value.missing and "absent: no such file" in str(caught.value)


def test_sha256_of_is_none_for_a_fifo_and_a_device(hostile: dict[str, Path]) -> None:
    assert sha256_of(hostile["fifo"]) is None and sha256_of(hostile["zero"]) is None


@pytest.mark.parametrize("kind", ["fifo", "zero", "folder", "huge"])
def test_every_reader_of_pv_refuses_it_by_name(hostile: dict[str, Path], opened: list[tuple[str, int]],
                                               tmp_path: Path, kind: str) -> None:
    path = hostile[kind]
    shown = str(path)
    with pytest.raises(LoadError, match="PV-LOAD-00[12]") as caught:
        load_document(path)
    assert caught.value.finding.location.path == shown
    with pytest.raises(ProfileError, match=f"profile file {shown}.yaml: (cannot read|file of)"):
        load_profile(_as_yaml(path))
    keys = tmp_path / f"keys-{kind}"
    keys.mkdir()
    (keys / "trusted.pub").symlink_to(path)
    with pytest.raises(SigningError, match=r"keys-\w+/trusted.pub: the public key: "):
        trusted_keys([keys])
    host = tmp_path / f"host-{kind}"
    host.mkdir(mode=0o700)
    (host / "signing-key.pem").symlink_to(path)
    with pytest.raises(SigningError, match="signing-key.pem: the signing key: "):
        load_host_key(host)
    evidence = load_mutation_evidence(path, "evidence", TrustedKeys({}, []), FolderTree(tmp_path))
    assert evidence.absent is not None and evidence.absent.startswith("evidence: cannot read the evidence file")
    project = tmp_path / f"project-{kind}"
    project.mkdir()
    (project / "pyproject.toml").symlink_to(path)
    with pytest.raises(config.ConfigError, match="pyproject.toml: "):
        config._read_table(project / "pyproject.toml")
    assert opened == []


def _as_yaml(path: Path) -> str:
    """``path`` under a ``.yaml`` name (a link), so that load_profile takes it as a file."""
    link = path.with_name(path.name + ".yaml")
    link.symlink_to(path)
    return str(link)

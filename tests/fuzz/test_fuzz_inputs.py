"""Every input of every pv command on hostile files: a FIFO (which would block a reader), a link
to /dev/zero (endless), a folder and a sparse file of 4 GiB, as a trusted public key (the keys
folder of `pv gate`), a profile (`pv verify --profile`), a pyproject.toml and a contract: each
ends in one clear error naming the file (exit 2), in bounded time and memory."""

from __future__ import annotations

import os
from pathlib import Path

from fuzz_bounded import assert_clear_cli, record, run_batch

KINDS = ("fifo", "zero", "folder", "huge")


def _make(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as handle:
            handle.truncate(4 * 2**30)  # over every cap, without the disk


def test_every_input_refuses_fifos_devices_folders_and_huge_files(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "contracts").mkdir(parents=True)
    (work / "falsifiers").mkdir()
    cases = []
    for kind in KINDS:
        keys = work / f"keys-{kind}"
        keys.mkdir()
        _make(keys / "trusted.pub", kind)
        cases.append({"kind": "cli", "argv": ["gate", "r.json", "--contracts", "contracts",
                                              "--trusted-keys", keys.name], "rc": (2,)})
        _make(work / f"profile-{kind}.yaml", kind)
        cases.append({"kind": "cli", "argv": ["verify", "--contracts", "contracts", "--falsifiers", "falsifiers",
                                              "--out", "out", "--profile", f"profile-{kind}.yaml"], "rc": (2,)})
        project = work / f"project-{kind}"
        project.mkdir()
        _make(project / "pyproject.toml", kind)
        cases.append({"kind": "cli", "argv": ["gate", "r.json", "--contracts", "contracts", "--root", project.name],
                      "rc": (2,)})
        _make(work / f"contract-{kind}.yaml", kind)
        cases.append({"kind": "cli", "argv": ["status", f"contract-{kind}.yaml"], "rc": (2,)})
    batch = run_batch(cases, tmp_path)
    assert_clear_cli(cases, batch)
    for case, result in zip(cases, batch.results):
        named = "pyproject.toml" if "--root" in case["argv"] else case["argv"][-1]
        assert named.split("/")[-1] in result["stderr"] + result["stdout"], (case, result["stderr"])
    record("hostile input files", batch, len(cases))

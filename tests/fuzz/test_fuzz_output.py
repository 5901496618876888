"""Data loss: no pv or distill writer replaces a link, a device, a FIFO or one of its inputs;
a full device is an error; new files get the mode the umask gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fuzz_bounded import assert_clear_cli, drawn, record, run_batch
from fuzz_contracts import contract
from hypothesis import strategies as st

from pv._util.errors import UserError
from pv._util.files import write_atomic

#: The commands that write an -o file, each with what it reads.
WRITERS = {
    "validate": lambda out: ["validate", "c.yaml", "-o", out],
    "validate-sarif": lambda out: ["validate", "c.yaml", "--format", "sarif", "-o", out],
    "gate": lambda out: ["gate", "report.json", "--contracts", ".", "-o", out],
}
#: Targets that must be refused and left as they are (made by _make_target).
REFUSED = ("link-to-outside", "dangling-link", "fifo", "folder", "the-input")


def _make_target(work: Path, outside: Path, kind: str, index: int) -> str:
    name = f"target-{index}"
    path = work / name
    if kind == "link-to-outside":
        path.symlink_to(outside / "canary.txt")
    elif kind == "dangling-link":
        path.symlink_to(outside / f"missing-{index}")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "the-input":
        return "c.yaml"
    return name


def full_device(folder: Path) -> str:
    """A full device to write to: a copy of /dev/full's node inside ``folder`` where we may make
    one (as root, a broken writer would otherwise replace the machine's /dev/full), else /dev/full
    itself (which a user who cannot make device nodes cannot replace either)."""
    node = folder / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (PermissionError, OSError):
        return "/dev/full"
    return str(node)


def test_no_writer_replaces_what_is_not_its_file(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "canary.txt").write_text("keep me\n")
    (work / "c.yaml").write_text(contract())
    (work / "report.json").write_text("{}")
    pairs = drawn(st.tuples(st.sampled_from(sorted(WRITERS)), st.sampled_from(REFUSED)), 30)
    pairs += [(writer, kind) for writer in WRITERS for kind in REFUSED]  # every pair at least once
    cases = []
    for index, (writer, kind) in enumerate(pairs):
        target = _make_target(work, outside, kind, index)
        cases.append({"kind": "cli", "argv": WRITERS[writer](target), "rc": (2,)})
    cases.append({"kind": "cli", "argv": ["validate", "c.yaml", "--format", "json", "-o", full_device(work)], "rc": (2,)})
    cases.append({"kind": "cli", "argv": ["validate", "c.yaml", "-o", "/dev/null"], "rc": (0,)})
    before = (work / "c.yaml").read_text()
    batch = run_batch(cases, tmp_path)
    assert_clear_cli(cases, batch)
    assert (work / "c.yaml").read_text() == before
    for index, (writer, kind) in enumerate(pairs):
        path = work / f"target-{index}"
        if kind in ("link-to-outside", "dangling-link"):
            assert path.is_symlink(), (writer, kind)
        elif kind == "fifo":
            assert stat.S_ISFIFO(os.lstat(path).st_mode)
        elif kind == "folder":
            assert path.is_dir() and not any(path.iterdir())
    assert "No space left" in batch.results[-2]["stderr"]
    assert stat.S_ISCHR(os.lstat(cases[-2]["argv"][-1]).st_mode), "the device was replaced"
    record("data loss (-o targets)", batch, len(cases))


def test_gguf_writer_refuses_links_and_reports_a_full_device(tmp_path: Path) -> None:
    from distill.errors import GGUFFormatError
    from distill.qwen2_gguf import write_gguf
    from distill.synth import PRESETS, synth_tensors

    config = PRESETS["tiny"]
    (tmp_path / "outside").mkdir()
    canary = tmp_path / "outside" / "model.gguf"
    canary.write_bytes(b"keep")
    link = tmp_path / "link.gguf"
    link.symlink_to(canary)
    with pytest.raises(GGUFFormatError, match="symbolic link"):
        write_gguf(link, config, synth_tensors(config, "f32", 1), None)
    assert link.is_symlink() and canary.read_bytes() == b"keep"
    with pytest.raises(GGUFFormatError, match="No space left"):
        write_gguf(full_device(tmp_path), config, synth_tensors(config, "f32", 1), None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    node = tmp_path / "full"
    assert not node.exists() or stat.S_ISCHR(os.lstat(node).st_mode), "the device was replaced"


def test_new_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = write_atomic(tmp_path / "report.txt", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_the_output_may_not_be_an_input_even_by_another_name(tmp_path: Path) -> None:
    source = tmp_path / "c.yaml"
    source.write_text("a: 1\n")
    (tmp_path / "alias.yaml").symlink_to(source)
    with pytest.raises(UserError, match="is the input"):
        write_atomic(tmp_path / "c.yaml", "report", inputs=[tmp_path / "alias.yaml"])
    assert source.read_text() == "a: 1\n"

"""The one output path of every pv writer: whole files or nothing, never over what is not a file.

A regular file (or a missing one) is written through a temporary file in the same
folder and a rename, so a reader never sees half of it and a failure leaves the old
one in place; the new file has the mode the umask gives (``0644`` under ``022``).
A character device (``/dev/null``, a terminal) is written through, and a write it
refuses (``/dev/full``) is an error. A symbolic link, a FIFO, a socket, a block
device or a folder is refused and left as it is, and so is an output that is one of
the command's inputs. Every refusal or OS error is a :class:`~pv._util.errors.UserError`
naming the path (exit 2). :func:`sha256_of` is the one digest of a file's bytes that
evidence compares.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pv._util.errors import UserError
from pv._util.text import shown

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _same_file(target: Path, inputs: Iterable[str | os.PathLike[str]]) -> str | None:
    for given in inputs:
        try:
            if os.path.samefile(target, given):
                return os.fspath(given)
        except OSError:
            continue
    return None


def umask_mode() -> int:
    """The mode a new file gets from the umask: ``0o666 & ~umask``."""
    current = os.umask(0o022)
    os.umask(current)
    return 0o666 & ~current


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> bool:
    """Refuse an output ``path`` that pv must not write; True when it is a character device
    (written through), False for a regular or missing file (replaced whole)."""
    target = Path(path)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise UserError(f"{shown(target)}: cannot write: {err.strerror or err}") from None
    same = _same_file(target, inputs)
    if same is not None:
        raise UserError(f"{shown(target)}: the output is the input {shown(same)}; choose another output path")
    if stat.S_ISREG(info.st_mode):
        return False
    if stat.S_ISCHR(info.st_mode):
        return True
    raise UserError(f"{shown(target)}: is {_kind(info.st_mode)}; pv writes only regular files"
                    " (or character devices) and leaves this one as it is")


def _write_device(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], text: str | bytes,
                 inputs: Iterable[str | os.PathLike[str]] = (), make_parents: bool = True,
                 mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8 if a string) to ``path`` whole or not at all; see the module text.

    Missing parent folders are created (with ``make_parents``; else a missing folder is
    refused). ``inputs`` are the files the output was made from: an output that is one
    of them is refused. ``mode``: the file's permission bits (default: as the umask gives);
    the temporary file is private (0600) until renamed.
    """
    target = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    device = check_output(target, inputs)
    tmp: str | None = None
    try:
        if device:
            _write_device(target, data)
            return target
        if make_parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        elif not target.parent.is_dir():
            raise UserError(f"{shown(target)}: folder {shown(target.parent)} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, umask_mode() if mode is None else mode)
        os.replace(tmp, target)
    except OSError as err:
        raise UserError(f"{shown(target)}: cannot write: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            Path(tmp).unlink(missing_ok=True)
    return target


def sha256_of(path: str | os.PathLike[str]) -> str | None:
    """The hex sha256 of a file's bytes (None when it cannot be read, e.g. it is gone)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None

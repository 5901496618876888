"""The one way distill opens an input file: a regular file, under a size limit, checked before a byte is read.

A FIFO would block the reader forever and a device such as /dev/zero never
ends, so the path is opened without blocking, checked with ``fstat`` on the
open descriptor (no race between the check and the read) and refused unless it
is a regular file no larger than the caller's limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from distill.errors import DistillError

#: The largest file distill reads whole into memory (token ids, checkpoint files), in bytes.
MAX_READ_BYTES = 64 * 1024**3


def open_input(path: str | Path, what: str, max_bytes: int, error: type[DistillError] = DistillError) -> BinaryIO:
    """``path`` opened for binary reading; ``error`` naming the path and ``what`` it holds when it cannot be
    opened, is not a regular file, or has more than ``max_bytes`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: cannot read {what}: not a regular file (a FIFO, device or folder is not read)")
        if info.st_size > max_bytes:
            raise error(f"{path}: {info.st_size} bytes of {what}, over the limit of {max_bytes} bytes")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | Path, what: str, max_bytes: int, error: type[DistillError] = DistillError) -> bytes:
    """The whole content of ``path``, opened with ``open_input``."""
    with open_input(path, what, max_bytes, error) as fh:
        try:
            data = fh.read(min(os.fstat(fh.fileno()).st_size, max_bytes) + 1)
        except OSError as err:
            raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if len(data) > max_bytes:  # the file grew after it was opened
        raise error(f"{path}: more than {max_bytes} bytes of {what}, over the limit")
    return data


def sha256_of(path: str | Path, what: str, max_bytes: int) -> str:
    """The hex sha256 of every byte of ``path``, opened with ``open_input``."""
    with open_input(path, what, max_bytes) as fh:
        try:
            return hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as err:
            raise DistillError(f"{path}: cannot read {what}: {err.strerror or err}") from None


class WatchedInputs:
    """Input files a long run relies on, by their size, modification time and inode when it started.

    ``check()`` raises DistillError naming a file that changed since (replaced, truncated,
    rewritten): the run holds its own copy of the bytes it uses, but its checkpoints
    name the file, so a changed file makes them lie.
    """

    def __init__(self, paths: dict[str, Path]) -> None:
        self.signatures = {what: (Path(path), _signature(Path(path))) for what, path in paths.items()}

    def check(self) -> None:
        for what, (path, signature) in self.signatures.items():
            try:
                now = _signature(path)
            except OSError as err:
                now = (err.strerror,)
            if now != signature:
                raise DistillError(f"{path}: the {what} file changed during the run (size, time or inode); the run "
                                   "used the bytes read at its start: restore the file, or start a new run")


def _signature(path: Path) -> tuple:
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns

"""The one input path and the one output path of every pv command.

Inputs (:func:`open_input`, :func:`read_input`): a path is read only when it is a
regular file (links followed) no larger than the caller's cap, checked before a byte
is read; a FIFO, device, socket or folder is refused by name, and the file is opened
with ``O_NONBLOCK`` so that one swapped for a FIFO after the check cannot block.

Outputs (:func:`write_atomic`): whole files or nothing, never over what is not a file.

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

import codecs
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from pv._util.errors import UserError
from pv._util.text import shown


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


class InputError(UserError):
    """An input pv will not read; ``reason`` says why without the path, ``missing`` and
    ``too_large`` tell the two cases callers word differently."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *, missing: bool = False,
                 too_large: bool = False) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path, self.reason, self.missing, self.too_large = os.fspath(path), reason, missing, too_large


def _regular(path: str | os.PathLike[str], info: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, f"cannot read: is {_kind(info.st_mode)}; pv reads only regular files")
    if limit is not None and info.st_size > limit:
        raise InputError(path, f"file of {info.st_size} bytes is over the limit of {limit} bytes", too_large=True)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def open_input(path: str | os.PathLike[str], limit: int | None) -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file of at most ``limit``
    bytes (None: any size); else an :class:`InputError` naming it. See the module text."""
    try:
        _regular(path, os.stat(path), limit)
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise InputError(path, "no such file", missing=True) from None
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    try:
        _regular(path, os.fstat(fd), limit)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_input(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (see :func:`open_input`)."""
    with open_input(path, limit) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as err:
            raise InputError(path, f"cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise InputError(path, f"file is over the limit of {limit} bytes (it grew while read)", too_large=True)
    return data


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


def _file_name_bytes(err: UnicodeError) -> tuple[bytes, int]:
    """Encoding error handler: a file name's undecodable byte (U+DC80..U+DCFF, as ``surrogateescape``
    decoded it) as that byte, any other lone surrogate as a ``\\uXXXX`` escape."""
    assert isinstance(err, UnicodeEncodeError)
    out = bytearray()
    for char in err.object[err.start:err.end]:
        code = ord(char)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}".encode("ascii")
    return bytes(out), err.end


codecs.register_error("pv-file-names", _file_name_bytes)


def encoded(text: str) -> bytes:
    """``text`` in UTF-8; the undecodable bytes of a file name in it are written back as they
    were, any other lone surrogate as a ``\\uXXXX`` escape."""
    return text.encode("utf-8", "pv-file-names")


def write_atomic(path: str | os.PathLike[str], text: str | bytes,
                 inputs: Iterable[str | os.PathLike[str]] = (), make_parents: bool = True,
                 mode: int | None = None) -> Path:
    """Write ``text`` (a string as :func:`encoded` gives it) to ``path`` whole or not at all; see the module text.

    Missing parent folders are created (with ``make_parents``; else a missing folder is
    refused). ``inputs`` are the files the output was made from: an output that is one
    of them is refused. ``mode``: the file's permission bits (default: as the umask gives);
    the temporary file is private (0600) until renamed.
    """
    target = Path(path)
    data = encoded(text) if isinstance(text, str) else bytes(text)
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
    """The hex sha256 of a regular file's bytes (None when it cannot be read: gone, or not a regular file)."""
    digest = hashlib.sha256()
    try:
        with open_input(path, None) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (InputError, OSError):
        return None
    return digest.hexdigest()

"""Writing the package's output files whole or not at all, never over what is not a file.

:func:`whole_file` hands a writer a temporary path in the target's folder and, when the
writer returns, renames it onto a regular (or missing) target with the mode the umask
gives, or copies it through a character device (a write the device refuses, as
``/dev/full`` does, is an error). A symbolic link, a FIFO, a socket, a block device, a
folder, or a target that is one of the ``inputs`` is refused and left as it is. Every
refusal or OS error is a :class:`~distill.errors.DistillError` naming the path.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distill.errors import DistillError

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def _shown(path: Path) -> str:
    text = os.fsdecode(path)
    return text if text.isprintable() else ascii(text)[1:-1]


def check_target(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                 error: type[DistillError] = DistillError) -> bool:
    """Refuse a target the package must not write; True for a character device (copied
    through), False for a regular or missing file (replaced whole)."""
    target = Path(path)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise error(f"{_shown(target)}: cannot write: {err.strerror or err}") from None
    for given in inputs:
        try:
            if os.path.samefile(target, given):
                raise error(f"{_shown(target)}: the output is the input {_shown(Path(given))}; choose another path")
        except OSError:
            continue
    if stat.S_ISREG(info.st_mode):
        return False
    if stat.S_ISCHR(info.st_mode):
        return True
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
    raise error(f"{_shown(target)}: is {kind}; only regular files (or character devices) are written")


def _umask_mode() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return 0o666 & ~current


@contextmanager
def whole_file(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
               error: type[DistillError] = DistillError) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; installed at ``path`` when the block ends
    without an exception, removed in every case."""
    target = Path(path)
    device = check_target(target, inputs, error)
    folder = Path(tempfile.gettempdir()) if device else target.parent
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as err:
        raise error(f"{_shown(target)}: cannot write: {err.strerror or err}") from None
    tmp = Path(name)
    try:
        yield tmp
        if device:
            with open(tmp, "rb") as source, open(target, "wb", buffering=0) as sink:
                shutil.copyfileobj(source, sink)
        else:
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, target)
    except OSError as err:
        raise error(f"{_shown(target)}: cannot write: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)

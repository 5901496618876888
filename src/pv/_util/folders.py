"""An output folder written whole: a run writes into a fresh folder beside it, swapped in at the end.

A reader of the output folder sees either the previous run's files or the new
run's, never a mix (an old decision next to a new or missing report). A folder
is replaced only if it is empty, was written this way (it holds :data:`MARKER`)
or holds nothing but the writer's own file names, so a mistyped ``--out`` never
deletes someone's files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

from pv._util.errors import UserError

#: the file that marks a folder as written whole by pv (its content names the writer)
MARKER = ".pv-output"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_replaceable(target: Path, names: Collection[str], option: str = "--out") -> None:
    """A UserError unless ``target`` is absent, or a folder that is empty, written by
    :func:`staged_folder`, or holds only files called ``names``."""
    if not target.exists():
        return
    if not target.is_dir():
        raise UserError(f"{option} {target}: is not a folder")
    if (target / MARKER).is_file():
        return
    foreign = sorted(entry.name for entry in target.iterdir() if entry.name not in names or not entry.is_file())
    if foreign:
        raise UserError(f"{option} {target}: holds files pv did not write ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder")


@contextlib.contextmanager
def staged_folder(target: Path, names: Collection[str], writer: str, option: str = "--out") -> Iterator[Path]:
    """Yield a new empty folder beside ``target``; when the block ends normally it replaces
    ``target`` whole. On an exception or interrupt it is removed and ``target`` stays as it was.
    ``names``: the files the writer puts there (see :func:`check_replaceable`)."""
    check_replaceable(target, names, option)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
        staging.chmod(0o777 & ~_umask())  # a folder made by mkdir, not mkdtemp's private 0700
    except OSError as err:
        raise UserError(f"{option} {target}: cannot create the folder: {err.strerror or err}") from None
    try:
        (staging / MARKER).write_text(f"{writer}\n", encoding="utf-8")
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, target)


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target``: between the two renames there is no ``target`` at all."""
    old = target.with_name(f".{target.name}.{os.getpid()}.old") if target.exists() else None
    try:
        if old is not None:
            os.rename(target, old)
        os.rename(staging, target)
    except OSError as err:
        if old is not None and old.exists() and not target.exists():
            os.rename(old, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{target}: cannot replace the folder: {err.strerror or err}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""A progress bar for long steps: counts and elapsed time on one line of stderr.

Drawn only when the stream is a terminal (redirected output and CI logs stay
clean), refreshed at most :data:`REFRESH_S` apart by the caller's updates and by
a ticker, so that a single long item still shows the time passing. Lines the
caller prints go through :meth:`Progress.print`, which clears the bar first.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pv._util.files import InputError, read_input, write_atomic

REFRESH_S = 1.0
BAR_WIDTH = 24


def format_bar(label: str, done: int, total: int | None, elapsed_s: float) -> str:
    """``label [#####-----] done/total  12s`` (without a total: ``label done  12s``)."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    clock = f"{minutes}:{seconds:02d}" if minutes else f"{seconds}s"
    if not total:
        return f"{label} {done}  {clock}"
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
    return f"{label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}  {clock}"


def write_counts(path: Path, done: int, total: int) -> None:
    """Keep ``done total`` in ``path`` for another process (``total`` 0 while unknown), replaced whole."""
    write_atomic(path, f"{done} {total}\n")


def read_counts(path: Path) -> tuple[int, int]:
    """``(done, total)`` from :func:`write_counts`; ``(0, 0)`` while there is none yet."""
    try:
        done, total = read_input(path, 64).decode("ascii").split()
        return int(done), int(total)
    except (InputError, ValueError):
        return 0, 0


class Progress:
    """``with Progress("checks", total=n) as bar: ... bar.advance()``; silent unless ``stream`` is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.shown = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> "Progress":
        if self.shown:
            self._draw()
            self._ticker = threading.Thread(target=self._tick, name="pv-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._clear()

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count (and the total, once known) and redraw."""
        self.done = done
        if total is not None:
            self.total = total
        self._draw()

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def print(self, *values: Any, file: IO[str] | None = None, **options: Any) -> None:
        """``print`` without tearing the bar: clear it, print, draw it again."""
        with self._lock:
            self._erase()
            print(*values, file=file if file is not None else sys.stdout, flush=True, **options)
        self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self._draw()

    def _draw(self) -> None:
        if not self.shown:
            return
        with self._lock:
            text = format_bar(self.label, self.done, self.total, time.monotonic() - self._started)
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def _erase(self) -> None:
        if self.shown and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def _clear(self) -> None:
        with self._lock:
            self._erase()

"""A progress bar for long steps: counts and elapsed time on one line of stderr.

Drawn only when the stream is a terminal (redirected output and CI logs stay
clean), refreshed at most :data:`REFRESH_S` apart by the caller's updates and by
a ticker, so that a single long item still shows the time passing. Lines the
caller prints go through :meth:`Progress.print`, which clears the bar first.
With ``log_every_s``, a stream that is not a terminal (a CI log) gets a plain
line instead (done/total, elapsed, an estimate of the time left) at least that
often, and one at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

from pv._util.files import InputError, read_input, write_atomic

REFRESH_S = 1.0
BAR_WIDTH = 24
#: how often a long step writes a plain progress line into a log (see :class:`Progress`)
LOG_EVERY_S = 10.0


def format_bar(label: str, done: int, total: int | None, elapsed_s: float) -> str:
    """``label [#####-----] done/total  12s`` (without a total: ``label done  12s``)."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    clock = f"{minutes}:{seconds:02d}" if minutes else f"{seconds}s"
    if not total:
        return f"{label} {done}  {clock}"
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
    return f"{label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}  {clock}"


def _clock_text(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def format_log_line(label: str, done: int, total: int | None, elapsed_s: float, detail: str = "",
                    rate_s: float | None = None) -> str:
    """``label: 3/12 done, 1:15 elapsed, about 3:45 left  detail``; the estimate from ``rate_s`` (seconds
    an item), else from the elapsed time, once one item is done."""
    count = f"{done}/{total}" if total else f"{done}"
    text = f"{label}: {count} done, {_clock_text(elapsed_s)} elapsed"
    if total and 0 < done < total:
        text += f", about {_clock_text((rate_s if rate_s is not None else elapsed_s / done) * (total - done))} left"
    return text + (f"  {detail}" if detail else "")


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
    """``with Progress("checks", total=n) as bar: ... bar.advance()``; silent unless ``stream`` is a terminal
    or ``log_every_s`` asks for log lines; ``clock`` (seconds) is injectable for tests."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None, *,
                 log_every_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.detail = ""
        self.stream = stream if stream is not None else sys.stderr
        self.shown = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = None if self.shown else log_every_s
        self.clock = clock
        self._started = clock()
        self._logged_at = self._started
        self._logged: tuple[int, int | None] | None = None
        #: when the total became known, and the count then: the estimate counts from there
        self._counted_from: tuple[float, int] | None = (self._started, 0) if total else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> "Progress":
        if self.log_every_s is not None:
            self._ticker = threading.Thread(target=self._tick, name="pv-progress", daemon=True)
            self._ticker.start()
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
        if self.log_every_s is not None and self._logged != (self.done, self.total):
            self._log()
        self._clear()

    def update(self, done: int, total: int | None = None, detail: str | None = None) -> None:
        """Set the count (and the total, once known, and a detail shown after it) and redraw."""
        self.done = done
        if total is not None:
            if self._counted_from is None:
                self._counted_from = (self.clock(), done)
            self.total = total
        if detail is not None:
            self.detail = detail
        self._draw()
        if self.log_every_s is not None and self.total and done >= self.total and self._logged != (done, self.total):
            self._log()

    def tick(self) -> None:
        """What the ticker does every :data:`REFRESH_S`: redraw the bar, or log a line when one is due."""
        if self.log_every_s is not None and self.clock() - self._logged_at >= self.log_every_s:
            self._log()
        self._draw()

    def _log(self) -> None:
        with self._lock:
            now = self.clock()
            rate = None
            if self._counted_from is not None and self.done > self._counted_from[1]:
                rate = (now - self._counted_from[0]) / (self.done - self._counted_from[1])
            self.stream.write(format_log_line(self.label, self.done, self.total, now - self._started, self.detail,
                                              rate) + "\n")
            self.stream.flush()
            self._logged_at, self._logged = now, (self.done, self.total)

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
            self.tick()

    def _draw(self) -> None:
        if not self.shown:
            return
        with self._lock:
            text = format_bar(self.label, self.done, self.total, self.clock() - self._started)
            text += f"  {self.detail}" if self.detail else ""
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

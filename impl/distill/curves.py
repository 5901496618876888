"""The run's curves: a PNG of loss and step time against the step, and a Markdown summary embedding it.

The PNG is drawn here with the standard library (zlib and a 3x5 pixel font
for the axis numbers): a plotting library would be a heavy dependency for two
line charts, and this one never touches a display or a font cache.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

PLOT_FILE = "curves.png"
SUMMARY_MD = "summary.md"
WIDTH, HEIGHT = 640, 420
_MARGIN_LEFT, _MARGIN_RIGHT, _PANEL_GAP, _TOP = 70, 16, 40, 24
_WHITE, _BLACK, _GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
_LOSS_COLOUR, _TIME_COLOUR = (31, 119, 180), (214, 96, 39)
_SCALE = 2  # font pixels per glyph pixel
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "+": "000010111010000", "e": "000111111100111", "l": "110010010010111", "o": "000111101101111",
    "s": "011100010001110", "t": "010111010010011", "p": "000111101111100", "i": "010000010010010",
    "m": "000111111101101", "(": "010100100100010", ")": "010001001001010", " ": "000000000000000",
}


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(_WHITE) * (width * height))

    def dot(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i : i + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        """Bresenham's line, two pixels thick."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, colour)
            self.dot(x0, y0 + 1, colour)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err, x0 = err + dy, x0 + sx
            if e2 <= dx:
                err, y0 = err + dx, y0 + sy

    def text(self, x: int, y: int, text: str, colour: tuple[int, int, int] = _BLACK) -> None:
        for k, char in enumerate(text):
            glyph = _GLYPHS.get(char, _GLYPHS[" "])
            for bit, on in enumerate(glyph):
                if on == "1":
                    gx, gy = x + (4 * k + bit % 3) * _SCALE, y + (bit // 3) * _SCALE
                    for px in range(_SCALE):
                        for py in range(_SCALE):
                            self.dot(gx + px, gy + py, colour)

    def png(self) -> bytes:
        rows = b"".join(b"\x00" + bytes(self.pixels[3 * self.width * y : 3 * self.width * (y + 1)])
                        for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def _text_width(text: str) -> int:
    return 4 * len(text) * _SCALE


def _panel(canvas: _Canvas, top: int, height: int, steps: list[int], values: list[float], title: str,
           colour: tuple[int, int, int]) -> None:
    left, right, bottom = _MARGIN_LEFT, WIDTH - _MARGIN_RIGHT, top + height
    for x0, y0, x1, y1 in ((left, top, right, top), (left, bottom, right, bottom),
                           (left, top, left, bottom), (right, top, right, bottom)):
        canvas.line(x0, y0, x1, y1, _GREY)
    canvas.text(left, top - 14, title, colour)
    finite = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
    if not finite:
        return
    low, high = min(v for _, v in finite), max(v for _, v in finite)
    span = high - low or abs(high) or 1.0
    first, last = steps[0], max(steps[-1], steps[0] + 1)
    for value in (low, high):
        label = f"{value:.3g}"
        y = bottom - round((value - low) / span * height) - 5
        canvas.text(left - 6 - _text_width(label), min(max(y, top), bottom - 10), label)
    canvas.text(left, bottom + 6, str(steps[0]))
    canvas.text(right - _text_width(str(steps[-1])), bottom + 6, str(steps[-1]))
    points = [(left + round((s - first) / (last - first) * (right - left)),
               bottom - round((v - low) / span * height)) for s, v in finite]
    if len(points) == 1:
        canvas.line(*points[0], *points[0], colour)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        canvas.line(x0, y0, x1, y1, colour)


def plot_png(steps: list[int], losses: list[float], step_times: list[float]) -> bytes:
    """A PNG with two panels against the step: the loss (top) and the step time in seconds (bottom)."""
    canvas = _Canvas(WIDTH, HEIGHT)
    height = (HEIGHT - _TOP - _PANEL_GAP - 24) // 2
    _panel(canvas, _TOP, height, steps, losses, "loss", _LOSS_COLOUR)
    _panel(canvas, _TOP + height + _PANEL_GAP, height, steps, step_times, "step time (s)", _TIME_COLOUR)
    return canvas.png()


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run's Markdown summary: its figures in a table, and the curves."""

    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return "-" if value is None else str(value).replace("|", "\\|")

    rows = [("status", summary.get("status")), ("steps", f"{summary.get('steps_completed')} of {summary.get('steps_requested')}"),
            ("first loss", summary.get("first_loss")), ("last loss", summary.get("final_loss")),
            ("mean step time (s)", summary.get("mean_step_time_s")), ("ranks", summary.get("world_size")),
            ("teacher backend", (summary.get("backend") or {}).get("backend")),
            ("last checkpoint", summary.get("last_checkpoint")), ("error", summary.get("error"))]
    lines = ["# Distillation run", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {show(value)} |" for name, value in rows]
    lines += ["", f"![loss and step time against the step]({PLOT_FILE})", ""]
    return "\n".join(lines)

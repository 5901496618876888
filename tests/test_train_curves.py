"""The run's curves: a valid PNG showing both series, and a Markdown summary embedding it."""

from __future__ import annotations

import math
import struct
import zlib
import pytest

from distill.curves import HEIGHT, PLOT_FILE, WIDTH, _LOSS_COLOUR, _TIME_COLOUR, plot_png, summary_markdown


def _decode(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB pixels of an 8-bit RGB PNG without filters, every chunk's CRC checked."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks[kind] = chunks.get(kind, b"") + data
        pos += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    rows = [raw[y * (1 + 3 * width) : (y + 1) * (1 + 3 * width)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def _count(pixels: bytes, colour: tuple[int, int, int]) -> int:
    return sum(1 for i in range(0, len(pixels), 3) if tuple(pixels[i : i + 3]) == colour)


def test_the_plot_draws_the_loss_and_the_step_time() -> None:
    steps = list(range(40))
    width, height, pixels = _decode(plot_png(steps, [2.0 - s / 40 for s in steps], [0.1 + (s % 3) / 100 for s in steps]))
    assert (width, height) == (WIDTH, HEIGHT)
    loss, time_ = _count(pixels, _LOSS_COLOUR), _count(pixels, _TIME_COLOUR)
    assert loss > WIDTH // 2 and time_ > WIDTH // 2  # each curve spans the panel


@pytest.mark.parametrize("losses, times", [([], []), ([1.0], [0.2]), ([1.0, math.nan, 1.0], [0.1, 0.1, math.inf])])
def test_empty_single_and_non_finite_series_still_give_a_valid_png(losses, times) -> None:
    _decode(plot_png(list(range(len(losses))), losses, times))


def test_the_summary_embeds_the_plot_and_escapes_table_cells() -> None:
    text = summary_markdown({"status": "failed", "steps_completed": 3, "steps_requested": 5, "final_loss": 0.5,
                             "error": "OSError: a|b"})
    assert f"![loss and step time against the step]({PLOT_FILE})" in text
    assert "| status | failed |" in text and "| steps | 3 of 5 |" in text and "a\\|b" in text


"""The progress bar: counts and elapsed time on a terminal, nothing at all elsewhere."""

from __future__ import annotations

import io

import pytest

from pv._util import progress as progress_module
from pv._util.progress import Progress, format_bar

pytest_plugins = ["pytester"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_counts_and_elapsed_time() -> None:
    assert format_bar("pv check", 3, 12, 75.4) == "pv check [######------------------] 3/12  1:15"
    assert format_bar("pv vacuity", 4, None, 9.9) == "pv vacuity 4  9s"


def test_on_a_terminal_the_bar_is_drawn_and_cleared(capsys) -> None:
    stream = Terminal()
    with Progress("steps", total=2, stream=stream) as bar:
        bar.advance()
        bar.print("a row")
        bar.advance()
    written = stream.getvalue()
    assert "steps [" in written and "1/2" in written and "2/2" in written and "0s" in written
    assert written.endswith("\r")  # the last act erases the bar
    assert capsys.readouterr().out == "a row\n"


def test_the_ticker_shows_time_passing_during_one_long_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "REFRESH_S", 0.01)
    stream = Terminal()
    with Progress("make-model", total=5, stream=stream):
        import time

        time.sleep(0.2)
    assert stream.getvalue().count("0/5") >= 3


def test_nothing_is_written_when_not_a_terminal(capsys) -> None:
    stream = io.StringIO()
    with Progress("steps", total=2, stream=stream) as bar:
        bar.advance()
        bar.print("a row")
    assert stream.getvalue() == ""
    assert capsys.readouterr().out == "a row\n"


def test_under_xdist_only_the_controller_keeps_the_counts_file(pytester: pytest.Pytester) -> None:
    # Workers writing the same file raced the controller (a worker's write failed, the worker quit
    # mid-run and xdist stopped with an internal error): a worker must not load the plugin at all.
    pytester.makepyfile(test_worker="""
        def test_in_a_worker(request):
            assert hasattr(request.config, "workerinput")
            assert request.config.pluginmanager.get_plugin("pv-progress-file") is None

        def test_second(request):
            pass
        """)
    counts = pytester.path / "counts"
    result = pytester.runpytest("-n", "2", "-p", "pv.plugins.progress", f"--pv-progress-file={counts}",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert progress_module.read_counts(counts) == (2, 2)

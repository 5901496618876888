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


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_log_line_comes_at_least_every_ten_seconds() -> None:
    """A CI log sees done/total, elapsed and an estimate at least every 10 s, whatever the items cost."""
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress("pv mutate: mutants", total=40, stream=stream, log_every_s=progress_module.LOG_EVERY_S,
                   clock=clock)
    bar.__enter__()
    bar._stop.set()  # the test drives the ticker itself
    bar._ticker.join()
    written_at = []
    for step in range(1, 61):  # one refresh a second, one mutant every 3 s, for 60 s
        clock.now += 1
        if step % 3 == 0:
            bar.update(step // 3, detail="killed 1")
        before = stream.getvalue().count("\n")
        bar.tick()
        if stream.getvalue().count("\n") > before:
            written_at.append(step)
    bar.__exit__(None, None, None)
    gaps = [later - earlier for earlier, later in zip([0, *written_at], written_at)]
    assert len(written_at) >= 5 and max(gaps) <= 10
    lines = stream.getvalue().splitlines()
    assert lines[0] == "pv mutate: mutants: 3/40 done, 0:10 elapsed, about 2:03 left  killed 1"
    assert lines[-1].startswith("pv mutate: mutants: 20/40 done, 1:00 elapsed")
    assert "\r" not in stream.getvalue()


def test_without_log_lines_asked_for_nothing_is_logged() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with Progress("steps", total=2, stream=stream, clock=clock) as bar:
        clock.now += 60
        bar.tick()
        bar.advance()
    assert stream.getvalue() == ""


def test_the_estimate_counts_from_when_the_total_became_known() -> None:
    """A first phase without a total (pv mutate's traced run) does not slow the estimate of the items."""
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress("pv mutate", stream=stream, log_every_s=progress_module.LOG_EVERY_S, clock=clock)
    clock.now += 100
    bar.tick()
    bar.update(0, 10)
    clock.now += 20
    bar.update(1)
    bar.tick()
    assert stream.getvalue().splitlines() == ["pv mutate: 0 done, 1:40 elapsed",
                                              "pv mutate: 1/10 done, 2:00 elapsed, about 3:00 left"]

"""Progress of the operator commands: a bar on a terminal, log lines in a job's log."""

from __future__ import annotations

import logging

import pytest

from app.progress import progress


def test_a_terminal_gets_a_bar_with_rows_and_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("re-sealing", 7, interactive=True) as advance:
        for done in (2, 4, 6, 7):
            advance(done)
    err = capsys.readouterr().err
    assert "re-sealing" in err
    assert "7/7" in err
    assert "rows/s" in err


def test_a_log_gets_a_line_now_and_then_and_one_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = iter([0.0, 5.0, 12.0, 13.0, 30.0])
    caplog.set_level(logging.INFO, "points_gateway.progress")
    with progress(
        "re-sealing", 100, interactive=False, every=10.0, clock=lambda: next(clock)
    ) as advance:
        advance(10)  # at 5 s: too soon for a line
        advance(40)  # at 12 s
        advance(41)  # at 13 s: too soon again
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "re-sealing: 100 rows",
        "re-sealing: 40 of 100 rows, 3 rows/s, about 0m18s left",
        "re-sealing: 41 rows in 30.0 s (1 rows/s)",
    ]

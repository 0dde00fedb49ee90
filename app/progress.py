"""Progress of a long operator command: a bar on a terminal, else a log line now and then."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger("points_gateway.progress")

LOG_EVERY = 10.0

Advance = Callable[[int], None]
"""Told how many items are done so far (not how many more)."""


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


def _eta(done: int, total: int, elapsed: float) -> str:
    if done <= 0 or done >= total:
        return "-"
    seconds = round(elapsed * (total - done) / done)
    return f"{seconds // 60}m{seconds % 60:02d}s"


@contextmanager
def progress(
    label: str,
    total: int,
    *,
    interactive: bool | None = None,
    every: float = LOG_EVERY,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Advance]:
    """Show `label`'s progress towards `total` rows while the block runs.

    On a terminal (stderr) a bar with rows, rate and time left; otherwise (a job's log) a line
    every `every` seconds and one at the end.
    """
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(label, total=total)
            yield lambda done: bar.update(task, completed=done)
        return
    started = clock()
    last = started
    done_so_far = 0

    def advance(done: int) -> None:
        nonlocal last, done_so_far
        done_so_far = done
        now = clock()
        if now - last >= every:
            last = now
            elapsed = now - started
            log.info(
                "%s: %d of %d rows, %.0f rows/s, about %s left",
                label,
                done,
                total,
                done / elapsed,
                _eta(done, total, elapsed),
            )

    log.info("%s: %d rows", label, total)
    yield advance
    elapsed = clock() - started
    log.info(
        "%s: %d rows in %.1f s (%.0f rows/s)",
        label,
        done_so_far,
        elapsed,
        done_so_far / elapsed if elapsed > 0 else 0.0,
    )

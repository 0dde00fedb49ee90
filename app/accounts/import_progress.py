"""How far an `accounts import` is: a bar on a terminal, else a log line every few seconds."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("points_gateway.accounts")
LOG_EVERY = 10.0


class Progress(Protocol):
    """Told after each batch: lines read so far, accounts written, lines rejected."""

    def update(self, *, position: int, lines: int, linked: int, rejected: int) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


class BarProgress:
    """rich's bar over the file's bytes (for the ETA), with accounts and their rate beside it
    (the same library as `keys rotate`'s bar, app/progress.py)."""

    def __init__(self, *, total: int, start: int) -> None:
        self._bar = RichProgress(
            TextColumn("import"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("import", total=total, completed=start, counts="")
        self._bar.start()
        self._started = time.monotonic()
        self._first: int | None = None

    def update(self, *, position: int, lines: int, linked: int, rejected: int) -> None:
        if self._first is None:
            self._first = linked
        rate = (linked - self._first) / max(time.monotonic() - self._started, 1e-9)
        counts = f"{linked:,} linked, {rejected:,} rejected, {rate:,.0f}/s"
        self._bar.update(self._task, completed=position, counts=counts)

    def note(self, message: str) -> None:
        self._bar.console.print(message, markup=False, highlight=False)

    def close(self) -> None:
        self._bar.stop()


class LogProgress:
    """A log line every `every` seconds: lines read, accounts written, rate, lines rejected."""

    def __init__(self, *, total: int, every: float = LOG_EVERY) -> None:
        self._total = total
        self._every = every
        self._started = self._last = time.monotonic()
        self._linked_at_start: int | None = None

    def update(self, *, position: int, lines: int, linked: int, rejected: int) -> None:
        now = time.monotonic()
        if self._linked_at_start is None:
            self._linked_at_start = linked
        if now - self._last < self._every:
            return
        self._last = now
        rate = (linked - self._linked_at_start) / max(now - self._started, 1e-9)
        log.info(
            "import progress: line %d, %d linked, %d rejected, %.0f accounts/s, %.1f%% of the file",
            lines,
            linked,
            rejected,
            rate,
            100.0 * position / max(self._total, 1),
        )

    def note(self, message: str) -> None:
        print(message, file=sys.stderr)

    def close(self) -> None:
        return None


def progress_for(total: int, start: int) -> Progress:
    """A bar when stderr is a terminal, log lines otherwise (a job, a pipe, a file)."""
    if sys.stderr.isatty():
        return BarProgress(total=total, start=start)
    return LogProgress(total=total)

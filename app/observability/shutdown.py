"""Graceful shutdown: readiness fails first, the listener drains, in-flight requests finish.

`points-gateway serve` runs uvicorn with `timeout_graceful_shutdown` (POINTS_SHUTDOWN_GRACE).
On the first SIGTERM/SIGINT `/readyz` answers 503 with `checks.shutdown: failed` at once, while the
listener keeps accepting and serving for POINTS_SHUTDOWN_DRAIN seconds, so whoever routes traffic
here sees the failing check and moves away before a connection is refused. Then uvicorn stops
accepting, lets the requests in flight finish (up to the grace period, then cancels them), and only
then runs the lifespan shutdown, which closes the provider clients, the cache and the store. A
second signal during the drain ends it at once. For servers this module does not run, readiness
fails from the lifespan shutdown on.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn

log = logging.getLogger("points_gateway.shutdown")
# What `serve --workers N`'s supervisor sends its workers when it starts draining.
DRAIN_SIGNAL = signal.SIGUSR1


class ShutdownState:
    """Whether this instance is shutting down (set once; read by /readyz)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def started(self) -> bool:
        """True from the shutdown signal on."""
        return self._event.is_set()

    def begin(self) -> None:
        """Mark the instance as shutting down (idempotent; safe in a signal handler)."""
        self._event.set()


def begin_on_drain_signal(state: ShutdownState) -> None:
    """In a worker of `serve --workers N`: fail readiness when the supervisor starts draining."""
    signal.signal(DRAIN_SIGNAL, lambda sig, frame: state.begin())


class GracefulServer(uvicorn.Server):
    """uvicorn's server, failing readiness at a stop signal and draining before it closes."""

    def __init__(self, config: uvicorn.Config, state: ShutdownState, *, drain: float = 0.0) -> None:
        super().__init__(config)
        self._shutdown_state = state
        self._drain = drain
        self._drain_ends: float | None = None
        self._drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._shutdown_state.begin()
        first = self._drain_ends is None and not self.should_exit
        super().handle_exit(sig, frame)
        if first and self._drain > 0 and self.started:
            # uvicorn has recorded the signal (it re-raises it after a clean stop); serving goes
            # on until on_tick sees the drain's end, or until the next signal.
            self._drain_ends = time.monotonic() + self._drain
            self.should_exit = False

    async def on_tick(self, counter: int) -> bool:
        ends = self._drain_ends
        if ends is not None and not self._drain_logged:
            # Logged here, not in the signal handler: a handler may interrupt a log call.
            self._drain_logged = True
            log.info("shutdown_drain", extra={"drain_seconds": self._drain})
        if ends is not None and not self.should_exit and time.monotonic() >= ends:
            self.should_exit = True
        return await super().on_tick(counter)

"""Graceful shutdown: readiness fails first, in-flight requests finish, then the lifespan closes.

`points-gateway serve` runs uvicorn with `timeout_graceful_shutdown` (POINTS_SHUTDOWN_GRACE).
On SIGTERM/SIGINT uvicorn stops accepting connections, lets the requests in flight finish (up to
the grace period, then cancels them), and only then runs the lifespan shutdown, which closes the
provider clients, the cache and the store. `/readyz` answers 503 with `checks.shutdown: failed`
from the signal on (and, for servers this module does not run, from the lifespan shutdown on).
"""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn


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


class GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the app (readiness) the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ShutdownState) -> None:
        super().__init__(config)
        self._shutdown_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._shutdown_state.begin()
        super().handle_exit(sig, frame)

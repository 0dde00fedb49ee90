"""`serve --workers N`: uvicorn's supervisor, draining its workers before it stops them.

uvicorn's supervisor owns SIGTERM/SIGINT and stops every worker at once. Here the first signal
instead asks each worker to fail `/readyz` (DRAIN_SIGNAL) while it goes on serving; when
POINTS_SHUTDOWN_DRAIN has passed, or at a second signal, the workers get SIGTERM and finish their
requests in flight within the grace, as a single `serve` process does.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.observability.shutdown import DRAIN_SIGNAL

log = logging.getLogger("points_gateway.shutdown")


class DrainingSupervisor(Multiprocess):
    """uvicorn's multiprocess supervisor with a drain window before the workers are stopped."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], *, drain: float
    ) -> None:
        super().__init__(config, sockets)
        self._drain = drain
        self._drain_ends: float | None = None

    def handle_term(self) -> None:
        self._stop()

    def handle_int(self) -> None:
        self._stop()

    def handle_signals(self) -> None:
        super().handle_signals()
        if self._drain_ends is not None and time.monotonic() >= self._drain_ends:
            self.should_exit.set()

    def terminate_all(self) -> None:
        super().terminate_all()
        # The workers close their copies of the listener at SIGTERM; with the supervisor's copy
        # open too, new connections would wait in the backlog, unanswered, until it exits.
        for sock in self.sockets:
            sock.close()

    def _stop(self) -> None:
        if self._drain_ends is not None or self._drain <= 0:
            self.should_exit.set()
            return
        log.info("shutdown_drain", extra={"drain_seconds": self._drain})
        self._drain_ends = time.monotonic() + self._drain
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, DRAIN_SIGNAL)


def serve_workers(config: uvicorn.Config, *, drain: float) -> None:
    """Bind the listener once and run `config.workers` workers under the draining supervisor."""
    sock = config.bind_socket()
    DrainingSupervisor(config, [sock], drain=drain).run()

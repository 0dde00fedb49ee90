"""Serve several ASGI apps with uvicorn in one event loop, on sockets bound up front."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free port, with no race to reuse it)."""
    # IPPROTO_TCP named: asyncio turns Nagle off only on accepted sockets whose proto says TCP,
    # and with Nagle a response's body waits out the client's delayed ACK (40 ms a request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Embedded(uvicorn.Server):
    """A server that leaves signals to whoever runs the loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Served:
    """One app to serve and the socket it listens on."""

    app: ASGIApp
    sock: socket.socket
    http: type[asyncio.Protocol] | str = "auto"  # uvicorn.Config's `http=`

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"


class ServerGroup:
    """Runs apps together; `stop()` (or the first to exit) ends them all."""

    def __init__(self, served: Sequence[Served], *, log_level: str = "warning") -> None:
        self._servers = [
            _Embedded(
                uvicorn.Config(
                    s.app,
                    http=s.http,
                    log_level=log_level,
                    lifespan="on",
                    # The process's own logging (app.observability.logging) carries uvicorn's
                    # records; no access lines: the gateway writes one line per request itself.
                    log_config=None,
                    access_log=False,
                    server_header=False,
                    # The gateway reads X-Forwarded-For itself (POINTS_LIMITS__TRUSTED_PROXIES).
                    proxy_headers=False,
                )
            )
            for s in served
        ]
        self._served = list(served)
        self.started = asyncio.Event()

    async def serve(self) -> None:
        """Serve until stopped; sets `started` once every server accepts connections."""
        tasks = [
            asyncio.create_task(server.serve(sockets=[s.sock]))
            for server, s in zip(self._servers, self._served, strict=True)
        ]
        watcher = asyncio.create_task(self._watch_started())
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stop()
            watcher.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Ask every server to finish."""
        for server in self._servers:
            server.should_exit = True

    async def _watch_started(self) -> None:
        # uvicorn exposes only a `started` flag, no event to wait on.
        while not all(server.started for server in self._servers):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.started.set()

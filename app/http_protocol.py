"""uvicorn's httptools protocol, with a cap on the bytes and the time a request's headers take.

httptools hands a header to the app only once it is complete, and builds it by concatenating
each read's bytes: a 100 MiB header costs 100 MiB of memory and quadratic copying before the app's
own 431 (app/security/hardening.py) can act. This protocol counts the bytes of headers still
incomplete and, past the cap, answers 431 itself and closes; a connection whose headers have not
arrived within POINTS_LIMITS__HEADER_TIMEOUT is closed. Idle keep-alive time stays uvicorn's own.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.problems import PROBLEM_MEDIA_TYPE
from app.security.hardening import NOSNIFF, HeadersTooLarge, problem_body
from app.settings import LimitSettings

# The base class's methods, called directly on the per-request path: super() costs a lookup
# object per call.
_feed = HttpToolsProtocol.data_received
_headers_complete = HttpToolsProtocol.on_headers_complete
_message_complete = HttpToolsProtocol.on_message_complete

# Raw bytes allowed beyond the app's header cap (whose count already includes each header's
# ": " and CRLF): a request line of up to 8 KiB, as nginx's buffers. A request the app would
# accept is never refused here unless its request line is longer.
REQUEST_LINE_ALLOWANCE = 8192


class HeaderCappedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses over-long (431) and over-slow (close) request headers."""

    # Slots keep the base's per-connection __dict__ from growing past its next resize.
    __slots__ = (
        "_awaiting_headers",
        "_header_bytes",
        "_header_limit",
        "_header_timeout",
        "_header_timer",
        "_max_headers",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: LimitSettings,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_headers = limits.max_header_bytes
        self._header_limit = limits.max_header_bytes + REQUEST_LINE_ALLOWANCE
        self._header_timeout = limits.header_timeout
        # True from the end of one message (or the connection's start) until the next
        # message's headers are complete; only then are bytes counted.
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing is closed too (uvicorn arms no timer before a request).
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Hot path: a request whose headers come in one read costs an addition and a few
        # attribute checks here. A read is counted whole when it starts inside headers; if they
        # are still incomplete after it, every byte of it was header, so the count never
        # overstates. The end of a message resets the count: a pipelined request that starts
        # mid-read is counted from its next read on.
        if self._awaiting_headers:
            self._header_bytes += len(data)
        _feed(self, data)
        if self._awaiting_headers and self._header_bytes and not self.transport.is_closing():
            if self._header_bytes > self._header_limit:
                self._refuse_headers()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    self._header_timeout, self._headers_timed_out
                )

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        if self._header_timer is not None:
            self._stop_header_timer()
        _headers_complete(self)

    def on_message_complete(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        _message_complete(self)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        # No answer, as nginx does: the client may never read it, and most are not clients.
        self.transport.close()

    def _refuse_headers(self) -> None:
        self._awaiting_headers = False
        self._stop_header_timer()
        # Nothing more is read or parsed: the point is not to buffer the rest.
        self.transport.pause_reading()
        if self.cycle is None or self.cycle.response_complete:  # never inside another answer
            self.transport.write(self._too_large())
        self.transport.close()

    def _too_large(self) -> bytes:
        body = problem_body(HeadersTooLarge.over(self._max_headers))
        lines = [
            *self.server_state.default_headers,
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            NOSNIFF,
            (b"connection", b"close"),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in lines)
        return STATUS_LINE[431] + head + b"\r\n" + body


def header_capped_protocol(limits: LimitSettings) -> type[asyncio.Protocol]:
    """uvicorn.Config's `http=`: HeaderCappedProtocol with these limits."""
    # uvicorn only calls `http` to make each connection's protocol, and pickles the Config into
    # `--workers` processes: a partial of a module-level class does both (a class made here
    # could not be pickled).
    return cast("type[asyncio.Protocol]", functools.partial(HeaderCappedProtocol, limits=limits))

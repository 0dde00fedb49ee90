"""Gateway-wide load shedding: past a cap of requests in flight, answer 503 at once."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Overloaded
from app.problems import problem_from

_EXEMPT = ("/healthz", "/readyz", "/metrics")


class LoadShedder:
    """Pure ASGI middleware: a counter, so shedding costs next to nothing when it happens."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int) -> None:
        self.app = app
        self._max = max_in_flight
        self.in_flight = 0
        body = problem_from(
            Overloaded("The gateway is at capacity; retry shortly.", retry_after=1),
            instance=None,
            request_id=None,
        )
        self._body = body.model_dump_json().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self._max:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"retry-after", b"1"),
                        (b"content-length", str(len(self._body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

"""Request ids: accept a caller's well-formed X-Request-ID or mint one, and echo it back."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_request_id() -> str:
    """A fresh request id (a UUID, the form GafaPay expects in its `requestid` header)."""
    return str(uuid.uuid4())


def request_id_of(scope: MutableMapping[str, object]) -> str | None:
    """The request id the middleware stored on this request's scope."""
    state = scope.get("state")
    if isinstance(state, dict):
        rid = state.get("request_id")
        if isinstance(rid, str):
            return rid
    return None


def _caller_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # Anything else is replaced, never echoed: it would reach our logs and upstream headers.
            return text if _VALID.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _caller_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        header = (REQUEST_ID_HEADER.encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)

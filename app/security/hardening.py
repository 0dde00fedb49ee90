"""Request caps and response headers that hold for every route."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import GatewayError
from app.problems import problem_from

NOSNIFF = (b"x-content-type-options", b"nosniff")


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    status = 413
    title = "The request body is too large"


class HeadersTooLarge(GatewayError):
    code = "headers_too_large"
    status = 431
    title = "The request headers are too large"

    @classmethod
    def over(cls, max_headers: int) -> HeadersTooLarge:
        """The error for headers over `max_headers` bytes (the app's check and the server's)."""
        return cls(f"Headers are limited to {max_headers} bytes.")


def problem_body(error: GatewayError) -> bytes:
    """The problem+json body of a refusal made before any route runs."""
    return problem_from(error, instance=None, request_id=None).model_dump_json().encode()


class Hardening:
    """Caps body and header sizes (413 / 431) and adds `X-Content-Type-Options: nosniff`."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_headers: int) -> None:
        self.app = app
        self._max_body = max_body
        self._max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        if sum(len(k) + len(v) + 4 for k, v in headers) > self._max_headers:
            await self._reject(send, HeadersTooLarge.over(self._max_headers))
            return
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            await self._reject(
                send, PayloadTooLarge(f"Bodies are limited to {self._max_body} bytes.")
            )
            return
        received = 0
        started = False
        rejected = False

        async def capped_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body and not started:
                    # Answer 413 here: frameworks turn errors raised while reading into a 400.
                    rejected = True
                    await self._reject(
                        send, PayloadTooLarge(f"Bodies are limited to {self._max_body} bytes.")
                    )
                    return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the app's own answer to the cut-off body is dropped
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), NOSNIFF]
            await send(message)

        await self.app(scope, capped_receive, send_with_headers)

    @staticmethod
    async def _reject(send: Send, error: GatewayError) -> None:
        body = problem_body(error)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    NOSNIFF,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

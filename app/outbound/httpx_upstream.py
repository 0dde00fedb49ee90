"""The outbound seam over any httpx transport: respx and MockTransport in tests, a plugin's own.

Requests go straight to the transport (no client: no auth, redirect or cookie passes, none of
which applies to a provider call) and the raw body is read, so decoding and the byte cap are the
seam's own, exactly as on the production wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from app.outbound.decoding import Undecodable
from app.outbound.upstream import (
    Opened,
    OutboundRequest,
    TransportFailed,
    TransportTimeout,
    Upstream,
    UpstreamConfig,
)


class HttpxUpstream(Upstream):
    """An upstream reached through an httpx transport."""

    def __init__(self, config: UpstreamConfig, *, transport: httpx.AsyncBaseTransport) -> None:
        super().__init__(config)
        self._transport = transport
        self._timeouts = httpx.Timeout(self.timeout, connect=self.connect_timeout).as_dict()

    async def _open(self, request: OutboundRequest) -> Opened:
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            extensions={"timeout": self._timeouts},
        )
        try:
            response = await self._transport.handle_async_request(outgoing)
        except httpx.DecodingError as exc:  # a transport that reads (and decodes) the answer
            raise Undecodable(None) from exc
        except httpx.TimeoutException as exc:
            raise TransportTimeout(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise TransportFailed(type(exc).__name__) from exc
        try:
            body = response.content
        except httpx.ResponseNotRead:
            return Opened(response.status_code, response.headers, _raw(response), response.aclose)
        # A transport that read the answer already (MockTransport, respx) decoded it too.
        headers = response.headers.copy()
        headers.pop("content-encoding", None)
        return Opened(response.status_code, headers, _whole(body), response.aclose)

    async def aclose(self) -> None:
        await self._transport.aclose()


async def _whole(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException as exc:
        raise TransportTimeout(type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise TransportFailed(type(exc).__name__) from exc

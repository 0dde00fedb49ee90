"""An httpx transport that sends through aiohttp, and the direct path the adapters use.

Why not httpx's default transport: measured on these machines it is 5-10x slower than aiohttp
under fan-out (DESIGN.md). Why not the `httpx-aiohttp` package: it maps aiohttp's
ClientConnectorError (connection refused, DNS failure) to httpx.ConnectTimeout, which would turn
`upstream_unreachable` into `upstream_timeout`; the mapping below keeps the two apart.

`AiohttpTransport.fetch` is the adapters' path in production: a request read whole in one go,
without httpx's Request and Response objects. Those parse the URL and copy and re-decode every
header in Python (a GafaPay query URL alone took 34 µs to parse); profiled under load the httpx
objects were about a tenth of a request's CPU. Any other transport (respx and httpx's
MockTransport in tests, a plugin's own) goes through `handle_async_request` as before, and
errors map to the same httpx exceptions on both paths.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httpx

_CHUNK = 64 * 1024
_IDENTITY = frozenset({"", "identity"})


@dataclass(frozen=True, slots=True, repr=False)
class OutboundRequest:
    """One provider request, ready for the wire: an absolute URL and the headers to send."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes | None = None

    def __repr__(self) -> str:
        # Headers carry tokens and bodies passwords: never part of a repr, a log or a traceback.
        return f"<OutboundRequest {self.method} {self.url.split('?', 1)[0]}>"

    def to_httpx(self, timeout: httpx.Timeout) -> httpx.Request:
        """The same request as httpx builds it (for transports other than aiohttp's)."""
        return httpx.Request(
            self.method,
            self.url,
            headers=self.headers,
            content=self.content,
            extensions={"timeout": timeout.as_dict()},
        )


@dataclass(frozen=True, slots=True, repr=False)
class Reply:
    """An upstream answer, read whole and within the size cap."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive (aiohttp's or httpx's headers)."""
    body: bytes

    def __repr__(self) -> str:
        # A provider's headers may set session cookies, and its body is a user's account data.
        return f"<Reply {self.status}, {len(self.body)} bytes>"


_DIGITS = re.compile(r"[0-9]{1,18}")


def declared_over(declared: str, max_bytes: int) -> bool:
    """Whether a Content-Length says the body is over the cap (a garbled one says nothing:
    the count while reading still caps the body)."""
    return _DIGITS.fullmatch(declared) is not None and int(declared) > max_bytes


class BodyTooLarge(Exception):
    """The answer's body is over the cap (declared or counted); `status` is the answer's."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _map_error(exc: BaseException) -> httpx.TransportError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, asyncio.TimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text)
    return httpx.ReadError(text)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests with an aiohttp session (created lazily inside the running loop)."""

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
                ssl=self._ssl,
                ttl_dns_cache=60,
            )
            # Decompression is left to httpx, which sees the Content-Encoding header.
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    async def fetch(
        self, request: OutboundRequest, *, timeouts: aiohttp.ClientTimeout, max_bytes: int
    ) -> Reply | httpx.Response:
        """Send and read the whole answer, capped at `max_bytes` (BodyTooLarge beyond).

        An answer with a Content-Encoding comes back as a streamed httpx.Response instead, so
        httpx's decoders (and the caller's cap on the decoded size) handle it as before.
        """
        try:
            response = await self._get_session().request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.content,
                allow_redirects=False,
                timeout=timeouts,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc
        headers = response.headers
        if headers.get("content-encoding", "").strip().lower() not in _IDENTITY:
            return self._wrap(response, httpx.Request(request.method, request.url))
        status = response.status
        try:
            if declared_over(headers.get("content-length", ""), max_bytes):
                raise BodyTooLarge(status)
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise BodyTooLarge(status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc
        finally:
            response.release()
        return Reply(status, headers, bytes(body))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        try:
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=timeout,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc) from exc
        return self._wrap(response, request)

    @staticmethod
    def _wrap(response: aiohttp.ClientResponse, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The outbound seam: one provider's upstream, bound to its base URL, timeout and byte cap.

An adapter builds requests with `Upstream.request` and sends them with `Upstream.send`, which
returns one `Reply` or raises the gateway's own upstream errors: a timeout, an unreachable
upstream, a body over the cap (declared or counted, compressed or not) or one that cannot be
decoded. Two implementations share everything here but the wire: `AiohttpUpstream`, which
production uses, and `HttpxUpstream`, over any httpx transport (respx and MockTransport in tests,
a plugin's own). Like httpx's transports, they differ only in how bytes come and go.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

import orjson

from app import __version__
from app.errors import UpstreamInvalidResponse, UpstreamTimeout, UpstreamUnreachable
from app.observability.events import note_upstream_status
from app.outbound.decoding import BodyTooLarge, Undecodable, decoded

USER_AGENT = f"points-gateway/{__version__}"
# What every request carries unless the adapter says otherwise: httpx's defaults, as the gateway
# has always sent them (the codings offered are the ones app/outbound/decoding.py undoes).
DEFAULT_HEADERS = (
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("user-agent", USER_AGENT),
)
_DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True, repr=False)
class OutboundRequest:
    """One upstream request, ready for the wire: an absolute URL and every header to send."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes | None = None

    def __repr__(self) -> str:
        # Headers carry tokens and bodies passwords: never part of a repr, a log or a traceback.
        return f"<OutboundRequest {self.method} {self.url.split('?', 1)[0]}>"


@dataclass(frozen=True, slots=True, repr=False)
class Reply:
    """An upstream's answer, read whole, decoded and within the byte cap."""

    provider: str
    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes

    def __repr__(self) -> str:
        # A provider's headers may set session cookies, and its body is a user's account data.
        return f"<Reply {self.provider} {self.status}, {len(self.body)} bytes>"


class TransportTimeout(Exception):
    """The wire gave up waiting: to connect, or for the next bytes."""


class TransportFailed(Exception):
    """The wire failed: refused, reset, DNS, TLS, a broken answer."""


@dataclass(frozen=True, slots=True)
class Opened:
    """An answer whose head has arrived: its status, headers and (still encoded) body chunks."""

    status: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]
    release: Callable[[], Awaitable[None]]
    """Gives the connection back, whether the body was read or not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    """What one upstream is bound to."""

    provider: str
    """The provider's name, for errors, logs and metrics."""
    base_url: str
    timeout: float
    """Seconds to wait for the next bytes of an answer."""
    connect_timeout: float
    max_bytes: int
    """The largest body accepted, encoded or decoded."""


def declared_over(declared: str, max_bytes: int) -> bool:
    """Whether a Content-Length says the body is over the cap (a garbled one says nothing:
    the count while reading still caps the body)."""
    return _DIGITS.fullmatch(declared) is not None and int(declared) > max_bytes


class Upstream(abc.ABC):
    """One provider's upstream; `send` is the only way a request leaves the gateway."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.provider = config.provider
        self.timeout = config.timeout
        self.connect_timeout = min(config.connect_timeout, config.timeout)
        self.max_bytes = config.max_bytes
        self._base = config.base_url.rstrip("/") + "/"
        self._headers = list(DEFAULT_HEADERS)

    def url(self, path: str) -> str:
        """An endpoint's absolute URL under the base URL (join it once, at start)."""
        return urljoin(self._base, path.lstrip("/"))

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: object = None,
    ) -> OutboundRequest:
        """A request to `url` with the default headers, overridden by `headers`.

        Built as plain data rather than httpx's Request: its URL and header objects parse in
        Python what aiohttp parses once in C, about a tenth of a request's CPU under load.
        """
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        if headers:
            names = {name.lower() for name in headers}
            merged = [(k, v) for k, v in self._headers if k not in names]
            merged.extend(headers.items())
        else:
            merged = list(self._headers)
        content = None
        if json is not None:
            content = orjson.dumps(json)
            merged.append(("content-type", "application/json"))
        return OutboundRequest(method, url, merged, content)

    async def send(self, request: OutboundRequest) -> Reply:
        """Send `request` and read its answer whole; upstream trouble raises a ProviderError."""
        name = self.provider
        try:
            opened = await self._open(request)
            try:
                note_upstream_status(opened.status)  # for the attempt's log line and span
                body = await self._read(opened)
            finally:
                await opened.release()
        except BodyTooLarge as exc:
            raise UpstreamInvalidResponse(
                f"{name} sent a body larger than {self.max_bytes} bytes",
                provider=name,
                upstream_status=exc.status,
            ) from None
        except Undecodable as exc:
            raise UpstreamInvalidResponse(
                f"{name} sent a body that could not be decoded",
                provider=name,
                upstream_status=exc.status,
            ) from None
        except TransportTimeout as exc:
            raise UpstreamTimeout(f"{name} did not answer in time", provider=name) from exc
        except TransportFailed as exc:
            raise UpstreamUnreachable(
                f"{name} could not be reached ({exc})", provider=name
            ) from exc
        return Reply(name, opened.status, opened.headers, body)

    async def _read(self, opened: Opened) -> bytes:
        status, cap = opened.status, self.max_bytes
        if declared_over(opened.headers.get("content-length", ""), cap):
            raise BodyTooLarge(status)
        raw = bytearray()
        async for chunk in opened.chunks:
            raw += chunk
            # The encoded body is held to the cap too (decoding only ever grows it here).
            if len(raw) > cap:
                raise BodyTooLarge(status)
        return decoded(bytes(raw), opened.headers.get("content-encoding", ""), cap, status)

    @abc.abstractmethod
    async def _open(self, request: OutboundRequest) -> Opened:
        """Send the request and wait for the answer's head (TransportTimeout/Failed else)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

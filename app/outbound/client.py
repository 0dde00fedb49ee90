"""The one place outbound HTTP clients are built: timeouts, limits, no redirects, the transport."""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson

from app import __version__
from app.outbound.transport import AiohttpTransport, OutboundRequest, Reply
from app.settings import OutboundSettings


class _NoCookies(CookieJar):
    """A jar that keeps nothing: provider cookies are never stored or sent.

    One client serves every user, so a cookie one user's answer set would go out with the next
    user's request. It is also faster: httpx hands every response to its jar, and the standard
    jar copies all the headers into an email.message.Message to look for Set-Cookie.
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class ProviderClient(httpx.AsyncClient):
    """An httpx client that can hand a request straight to its transport."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._wire = transport
        self._aiohttp = transport if isinstance(transport, AiohttpTransport) else None
        timeout = self.timeout
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout.connect, sock_read=timeout.read
        )

    async def fetch(self, request: OutboundRequest, *, max_bytes: int) -> Reply | httpx.Response:
        """The whole answer (aiohttp's direct path), else the transport's streamed response."""
        if self._aiohttp is not None:
            return await self._aiohttp.fetch(
                request, timeouts=self._aiohttp_timeout, max_bytes=max_bytes
            )
        return await self.send_direct(request.to_httpx(self.timeout))

    async def send_direct(self, request: httpx.Request) -> httpx.Response:
        """The transport's streamed answer, without `send`'s auth, redirect and cookie passes.

        None of them applies to a provider call (no auth flow, redirects refused, no cookies),
        and together with the response wrapping they cost about a tenth of a request's CPU.
        """
        response = await self._wire.handle_async_request(request)
        response.request = request
        return response


def build_client(
    base_url: str,
    timeout: float,
    *,
    settings: OutboundSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client for one provider; `transport` is the test seam (a respx router)."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=settings.keepalive_expiry,
    )
    return ProviderClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(settings.connect_timeout, timeout)),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": f"points-gateway/{__version__}"},
        cookies=_NoCookies(),
        transport=transport or AiohttpTransport(limits=limits),
    )


class RequestMaker:
    """Builds one provider's requests as plain data, without httpx's URL and header objects.

    `AsyncClient.build_request` parsed the URL three or four times per request in Python
    (percent-encoding regexes, an IP-address parse of the host); profiled under load that was a
    tenth of the gateway's CPU. Here each endpoint's URL is joined and parsed once, at start,
    and a query is appended encoded (`urlencode`); aiohttp parses the result once, in C (yarl).
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._headers = client.headers.multi_items()
        self._base = client.base_url

    def url(self, path: str) -> str:
        """An endpoint's absolute URL under the client's base URL (joined once, at start)."""
        return str(self._base.join(path.lstrip("/")))

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        json_body: object = None,
    ) -> OutboundRequest:
        """A request with the client's default headers, overridden by `headers`."""
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        names = {name.lower() for name in headers}
        merged = [(k, v) for k, v in self._headers if k.lower() not in names]
        merged.extend(headers.items())
        content = None
        if json_body is not None:
            content = orjson.dumps(json_body)
            merged.append(("content-type", "application/json"))
        return OutboundRequest(method, url, merged, content)

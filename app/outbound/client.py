"""The one place outbound HTTP clients are built: timeouts, limits, no redirects, the transport."""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from app import __version__
from app.outbound.transport import AiohttpTransport
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
    """Builds one provider's requests without `AsyncClient.build_request`'s URL work.

    build_request merges the base URL, the path and the query by parsing the URL three or four
    times (httpx parses in Python: percent-encoding regexes, an IP-address parse of the host);
    profiled under load that was a tenth of the gateway's CPU. Here each endpoint's URL is
    parsed once, at start, and a request with a query parses its URL once.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._headers = client.headers
        self._extensions = {"timeout": client.timeout.as_dict()}
        self._base = client.base_url

    def url(self, path: str) -> httpx.URL:
        """An endpoint's URL under the client's base URL (parse once, reuse for every request)."""
        return self._base.join(path.lstrip("/"))

    def request(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        json_body: object = None,
    ) -> httpx.Request:
        """A request the client's `send` can take: its default headers, timeouts and `headers`."""
        if params:
            # One parse of the whole URL; copy_merge_params would parse the query and URL again.
            url = httpx.URL(f"{url}{'&' if url.query else '?'}{urlencode(params)}")
        merged = httpx.Headers(self._headers)
        merged.update(headers)
        content = None
        if json_body is not None:
            content = orjson.dumps(json_body)
            merged["content-type"] = "application/json"
        return httpx.Request(
            method, url, headers=merged, content=content, extensions=dict(self._extensions)
        )

"""Which wire an upstream gets: aiohttp in production, a given httpx transport in tests."""

from __future__ import annotations

import httpx

from app.outbound.aiohttp_upstream import AiohttpUpstream
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import Upstream, UpstreamConfig
from app.settings import OutboundSettings


def build_upstream(
    config: UpstreamConfig,
    *,
    settings: OutboundSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Upstream:
    """An upstream for `config`; `transport` is the test seam (a respx router, a MockTransport)."""
    if transport is not None:
        return HttpxUpstream(config, transport=transport)
    return AiohttpUpstream(config, pool=settings)

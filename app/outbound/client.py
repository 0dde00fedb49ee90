"""The one place outbound HTTP clients are built: timeouts, limits, no redirects, the transport."""

from __future__ import annotations

import httpx

from app import __version__
from app.outbound.transport import AiohttpTransport
from app.settings import OutboundSettings


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
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(settings.connect_timeout, timeout)),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": f"points-gateway/{__version__}"},
        transport=transport or AiohttpTransport(limits=limits),
    )

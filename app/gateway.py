"""The long-lived objects of one gateway instance: validated up front, built by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from pydantic import BaseModel

from app.accounts.directory import AccountDirectory, InMemoryDirectory
from app.outbound.client import build_client
from app.points.aggregator import Aggregator
from app.providers.base import ConfigurationError, ProviderDeps, ProviderPlugin
from app.providers.registry import Registry, configure, discover_plugins
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """Validated settings, ready to build from; making one does no I/O beyond reading files."""

    settings: Settings
    providers: dict[str, tuple[ProviderPlugin, BaseModel]]
    directory: AccountDirectory


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the routes reach through `get_gateway`."""

    settings: Settings
    registry: Registry
    directory: AccountDirectory
    aggregator: Aggregator

    async def aclose(self) -> None:
        """Close every outbound connection."""
        await self.registry.aclose()


def plan_gateway(settings: Settings, *, directory: AccountDirectory | None = None) -> GatewayPlan:
    """Check the settings and the seeded accounts; raises ConfigurationError saying what to fix."""
    providers = configure(
        settings.enabled_providers,
        settings.providers,
        discover_plugins(),
        allow_http=settings.sandbox,
    )
    if directory is None:
        plugins = {name: plugin for name, (plugin, _) in providers.items()}
        path = settings.accounts_file
        directory = InMemoryDirectory.from_file(path, plugins) if path else InMemoryDirectory()
    return GatewayPlan(settings, providers, directory)


def build_gateway(
    plan: GatewayPlan, *, transport: httpx.AsyncBaseTransport | None = None
) -> Gateway:
    """Build the outbound clients, adapters and aggregator (the transport is the test seam)."""
    settings = plan.settings

    def client_factory(base_url: str, timeout: float) -> httpx.AsyncClient:
        # A backstop for plugins whose settings do not use BaseUrl.
        if base_url.startswith("http://") and not settings.sandbox:
            raise ConfigurationError(
                f"{base_url}: provider URLs must use https "
                "(plain http is allowed only with POINTS_SANDBOX=true)"
            )
        return build_client(base_url, timeout, settings=settings.outbound, transport=transport)

    deps = ProviderDeps(
        client_factory=client_factory, max_response_bytes=settings.outbound.max_response_bytes
    )
    registry = Registry.build(plan.providers, deps)
    aggregator = Aggregator(registry, plan.directory, deadline=settings.request_deadline)
    return Gateway(settings, registry, plan.directory, aggregator)

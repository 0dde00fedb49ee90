"""The application factory and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

from app import __version__
from app.accounts.store import AccountStore
from app.api import accounts, health, points, provider_routes, providers
from app.api.docs_pages import docs_router
from app.gateway import build_gateway, open_cache, open_store, plan_gateway
from app.gc_tuning import tune_for_serving
from app.observability import routes as observability_routes
from app.observability.logging import configure_logging
from app.observability.metrics import GatewayMetrics
from app.observability.middleware import ObservabilityMiddleware
from app.observability.shutdown import ShutdownState, begin_on_drain_signal
from app.observability.tracing import configure_tracing
from app.openapi_doc import install_openapi
from app.problems import install_problem_handlers
from app.request_context import RequestIdMiddleware
from app.resilience.cache import BalanceCache
from app.resilience.shedding import LoadShedder
from app.security.client_address import ClientAddresses
from app.security.hardening import Hardening
from app.settings import Settings, get_settings

OPENAPI_URL = "/openapi.json"  # served whatever POINTS_DOCS_ENABLED says: clients generate from it


def _operation_id(route: APIRoute) -> str:
    return route.name


_NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: AccountStore | None = None,
    cache: BalanceCache | None = None,
) -> FastAPI:
    """Build the ASGI app; settings are checked here, so bad configuration fails before serving."""
    plan = plan_gateway(settings or get_settings(), store=store)
    # Per app, never the process-global registry: tests build many apps in one process.
    metrics = GatewayMetrics()
    shutdown = ShutdownState()
    configure_tracing()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = build_gateway(
            plan, await open_store(plan), cache or open_cache(plan.settings), transport=transport
        )
        app.state.gateway = gateway
        gateway.watch_accounts(metrics)
        try:
            yield
        finally:
            shutdown.begin()  # readiness fails from here on (serve marks it at the signal)
            await gateway.aclose()

    app = FastAPI(
        title="points-gateway",
        version=__version__,
        description="One fast, honest API for a user's loyalty and reward-point balances.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # The gateway traces and counts requests itself (app.observability); FastAPI's own
        # OpenTelemetry layer would record them twice and looks up the global providers on
        # every request.
        telemetry=_NO_FASTAPI_TELEMETRY,
        # Starlette answers a path with a stray trailing slash with a redirect to an absolute URL
        # built from the caller's Host header, before any authentication: 404 instead.
        redirect_slashes=False,
        openapi_url=OPENAPI_URL,
        # FastAPI's own pages load their assets from CDNs: /docs and /redoc are ours (below).
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.shutdown = shutdown
    limits = plan.settings.limits
    if limits.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=limits.cors_origins,
            allow_methods=["GET", "PUT", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "X-Request-ID",
                "Request-Timeout",
                "Cache-Control",
            ],
            expose_headers=["X-Request-ID", "X-Points-Complete", "Retry-After"],
        )
    app.add_middleware(LoadShedder, max_in_flight=plan.settings.resilience.max_in_flight_requests)
    app.add_middleware(
        Hardening, max_body=limits.max_body_bytes, max_headers=limits.max_header_bytes
    )
    # Outside shedding and the caps, so their refusals are logged and counted too.
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        client_address=ClientAddresses(limits.trusted_proxies).of,
    )
    # Added last, so it runs first: even a shed request gets its X-Request-ID.
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    for router in (
        points.router,
        provider_routes.provider_router(plan.known.values()),
        accounts.router,
        providers.router,
        health.router,
        observability_routes.router,
    ):
        app.include_router(router)
    if plan.settings.docs_enabled:
        app.include_router(docs_router(title=app.title, openapi_url=OPENAPI_URL))
    install_openapi(app, plan.known.values())
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (each worker reads the environment, logging included)."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    tune_for_serving()  # a process that serves the gateway, as `serve --workers N` does
    begin_on_drain_signal(app.state.shutdown)
    return app

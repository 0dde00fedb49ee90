"""One log line, metrics and a span per request: a pure ASGI middleware (no per-request task).

The line is the request's only one at INFO when all went well: what each provider did (outcome,
attempts, upstream time, cache) rides on it as `providers`, noted by `events` while the app ran.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import events, tracing
from app.observability.logging import HotLogger, bind_request_id, unbind
from app.observability.metrics import GatewayMetrics, stop_using_metrics, use_metrics

access_log = HotLogger("points_gateway.access")

UNMATCHED = "unmatched"
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection first"
# Anything else a caller sends as a method is counted as "other": labels must stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Probes and scrapes: counted, but logged at DEBUG so they do not drown the request log.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class ObservabilityMiddleware:
    """Binds the request id into the log context, then records the request when it ends.

    Sits inside RequestIdMiddleware (which stores the id on the scope) and outside load
    shedding and the size caps, so their refusals are logged and counted too. The route template
    (`/users/{user_id}/points`) comes from the scope once routing has matched; a request that
    never reached a route is `unmatched`, and a 503 from such a request is load shedding.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: GatewayMetrics, client_address: Callable[[Scope], str]
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._client_address = client_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 0

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self._metrics
        method = scope["method"] if scope["method"] in _METHODS else "other"
        log_tokens = bind_request_id(state.get("request_id"))
        providers, providers_token = events.track_providers()
        metrics_token = use_metrics(metrics)
        metrics.http_in_flight.inc()
        try:
            with tracing.request_span(method, scope["headers"]) as span:
                try:
                    await self.app(scope, receive, send_observed)
                except asyncio.CancelledError:
                    status = status or CLIENT_CLOSED  # the client went away before an answer
                    raise
                finally:
                    # Nothing sent means the app failed and the server answers 500.
                    self._record(scope, state, method, status or 500, started, span, providers)
        finally:
            metrics.http_in_flight.dec()
            stop_using_metrics(metrics_token)
            events.stop_tracking_providers(providers_token)
            unbind(log_tokens)

    def _record(
        self,
        scope: Scope,
        state: dict[str, object],
        method: str,
        status: int,
        started: float,
        span: object,
        providers: events.Providers,
    ) -> None:
        duration = time.perf_counter() - started
        template = getattr(scope.get("route"), "path", None)
        route = template if isinstance(template, str) else UNMATCHED
        metrics = self._metrics
        labels = (method, route, str(status))
        metrics.child(metrics.http_requests, *labels).inc()
        metrics.child(metrics.http_duration, *labels).observe(duration)
        if status == 429:
            metrics.rate_limited.inc()
        elif status == 503 and route == UNMATCHED:
            metrics.load_shed.inc()
        principal = getattr(state.get("principal"), "id", None)
        tracing.finish_span(
            span,
            {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "points.request_id": str(state.get("request_id")),
            },
            error=str(status) if status >= 500 else None,
        )
        if span is not None:
            span.update_name(f"{method} {route}")  # type: ignore[attr-defined]
        fields: dict[str, object] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "client": self._client_address(scope),
        }
        if principal is not None:
            fields["principal"] = principal
        if providers:
            fields["providers"] = providers
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        access_log.log(level, "request", **fields)

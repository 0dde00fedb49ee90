"""The /metrics route (kept out of the OpenAPI document)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import GatewayDep
from app.errors import Unauthorized
from app.observability.metrics import GatewayMetrics

router = APIRouter()


def metrics_of(request: Request) -> GatewayMetrics:
    """The app's metrics (created with the app, before its lifespan)."""
    metrics = request.app.state.metrics
    assert isinstance(metrics, GatewayMetrics)
    return metrics


def _authorized(request: Request, expected: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request, gateway: GatewayDep) -> Response:
    """Prometheus text format; needs `Authorization: Bearer <POINTS_METRICS_TOKEN>` when set."""
    token = gateway.settings.metrics_token
    if token is not None:
        gateway.security.refuse_if_over(request)
        if not _authorized(request, token.get_secret_value()):
            await gateway.security.failed(
                request,
                Unauthorized("/metrics needs Authorization: Bearer <the metrics token>."),
                credential="metrics_token",
            )
    metrics = metrics_of(request)
    for name, circuit in gateway.circuits().items():
        metrics.set_breaker_state(name, circuit.state)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.api.deps import GatewayDep
from app.errors import StoreUnavailable
from app.observability.shutdown import ShutdownState

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process is up and serving."""

    status: Literal["ok"] = "ok"


@router.get("/healthz", operation_id="get_health", summary="Liveness", response_model=Health)
async def get_health() -> Health:
    """Answers 200 while the process serves requests."""
    return Health()


class Readiness(BaseModel):
    """Whether this instance should get traffic, and what each dependency said."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Literal["ok", "degraded", "failed"]]


@router.get(
    "/readyz",
    operation_id="get_readiness",
    summary="Readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: see `checks`."}},
)
async def get_readiness(request: Request, gateway: GatewayDep) -> Response:
    """Ready while the account store answers; a Redis outage is `degraded`, not unready."""
    # From the shutdown signal on (serve) or the lifespan shutdown (any server), `shutdown` is
    # `failed` and the answer 503: traffic stops coming while the requests in flight finish.
    checks: dict[str, Literal["ok", "degraded", "failed"]] = {}
    try:
        await gateway.store.ping()
        checks["store"] = "ok"
    except StoreUnavailable:
        checks["store"] = "failed"
    checks["cache"] = "ok" if gateway.cache_healthy else "degraded"
    shutdown = getattr(request.app.state, "shutdown", None)
    if isinstance(shutdown, ShutdownState) and shutdown.started:
        checks["shutdown"] = "failed"
    ready = checks["store"] == "ok" and "shutdown" not in checks
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return Response(
        body.model_dump_json(), status_code=200 if ready else 503, media_type="application/json"
    )

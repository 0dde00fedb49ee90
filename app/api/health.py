"""Liveness and readiness."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.answer_model import AnswerModel
from app.api.deps import GatewayDep
from app.errors import StoreUnavailable
from app.observability.shutdown import ShutdownState

router = APIRouter(tags=["health"])


class Health(AnswerModel):
    """The process is up and serving."""

    status: Literal["ok"] = "ok"


@router.get("/healthz", operation_id="get_health", summary="Liveness", response_model=Health)
async def get_health() -> Health:
    """Answers 200 while the process serves requests."""
    return Health()


class ReadinessStatus(StrEnum):
    """Whether this instance should get traffic."""

    READY = "ready"
    NOT_READY = "not_ready"


class CheckStatus(StrEnum):
    """What one dependency said: `degraded` serves on (a cache down), `failed` does not."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


class Readiness(AnswerModel):
    """Whether this instance should get traffic, and what each dependency said."""

    status: ReadinessStatus
    checks: dict[str, CheckStatus]


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
    checks: dict[str, CheckStatus] = {}
    try:
        await gateway.store.ping()
        checks["store"] = CheckStatus.OK
    except StoreUnavailable:
        checks["store"] = CheckStatus.FAILED
    checks["cache"] = CheckStatus.OK if gateway.cache_healthy else CheckStatus.DEGRADED
    account_cache = gateway.store.account_cache_active
    if account_cache is not None:
        # Off while its change listener is down: lookups go to the database, nothing is wrong.
        checks["account_cache"] = CheckStatus.OK if account_cache else CheckStatus.DEGRADED
    shutdown = getattr(request.app.state, "shutdown", None)
    if isinstance(shutdown, ShutdownState) and shutdown.started:
        checks["shutdown"] = CheckStatus.FAILED
    ready = checks["store"] is CheckStatus.OK and "shutdown" not in checks
    body = Readiness(
        status=ReadinessStatus.READY if ready else ReadinessStatus.NOT_READY, checks=checks
    )
    return Response(
        body.model_dump_json(), status_code=200 if ready else 503, media_type="application/json"
    )

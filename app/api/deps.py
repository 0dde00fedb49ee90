"""Tiny accessors that routes depend on (the balance reads call them directly: BalanceRoute)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.errors import InvalidRequest
from app.gateway import Gateway
from app.points.aggregator import QueryOptions
from app.providers.base import CallContext
from app.request_context import new_request_id, request_id_of

# `async def` throughout: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
# per dependency per request for work that takes microseconds.


async def get_gateway(request: Request) -> Gateway:
    """The gateway instance the lifespan built."""
    gateway = request.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway


@dataclass(frozen=True, slots=True)
class PointsQuery:
    """One request that asks providers: the gateway, the call context and the options.

    One dependency rather than three: FastAPI spends about 15 µs solving each dependency of
    each request, and these three are always wanted together.
    """

    gateway: Gateway
    call: CallContext
    options: QueryOptions


async def get_points_query(request: Request) -> PointsQuery:
    """The gateway, what adapters may pass upstream, and how the request wants its answer."""
    gateway = await get_gateway(request)
    call = CallContext(request_id=request_id_of(request.scope) or new_request_id())
    return PointsQuery(gateway, call, query_options(request, gateway))


def query_options(request: Request, gateway: Gateway) -> QueryOptions:
    """The request's deadline (lowered by `Request-Timeout`) and cache wish (`no-cache`)."""
    settings = gateway.settings
    deadline = settings.request_deadline
    raw = request.headers.get("request-timeout")
    if raw is not None:
        try:
            asked = float(raw)
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked) or asked <= 0:
            raise InvalidRequest("Request-Timeout must be a positive number of seconds.")
        deadline = min(asked, settings.request_deadline_max)
    directives = {d.strip().lower() for d in request.headers.get("cache-control", "").split(",")}
    return QueryOptions(deadline=deadline, fresh=bool(directives & {"no-cache", "max-age=0"}))


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
PointsQueryDep = Annotated[PointsQuery, Depends(get_points_query)]

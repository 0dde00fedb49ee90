"""The programs this gateway serves."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import GatewayDep
from app.api.docs import problems
from app.api.security_deps import PUBLIC

router = APIRouter(tags=["providers"])


class CircuitInfo(BaseModel):
    """The provider's circuit breaker: `open` means calls fail fast for `retry_after` seconds."""

    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    retry_after: int | None


class ProviderInfo(BaseModel):
    """One configured program."""

    name: str
    display_name: str
    unit: str
    circuit: CircuitInfo


class ProviderList(BaseModel):
    """The configured programs, in answer order."""

    providers: list[ProviderInfo]


@router.get(
    "/providers",
    operation_id="list_providers",
    summary="The configured programs",
    response_model=ProviderList,
    dependencies=[PUBLIC],
    responses=problems(429),
)
async def list_providers(gateway: GatewayDep) -> ProviderList:
    """The programs this gateway serves: names, display names, units and circuit state."""
    infos = []
    for name in gateway.registry.names():
        plugin, _ = gateway.registry.require(name)
        breaker = gateway.aggregator.fetcher.breaker(name).snapshot()
        circuit = CircuitInfo(
            state=breaker.state,
            consecutive_failures=breaker.consecutive_failures,
            retry_after=breaker.retry_after,
        )
        infos.append(
            ProviderInfo(
                name=name, display_name=plugin.display_name, unit=plugin.unit, circuit=circuit
            )
        )
    return ProviderList(providers=infos)

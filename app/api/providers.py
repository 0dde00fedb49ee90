"""The providers this gateway serves."""

from __future__ import annotations

from enum import StrEnum

from fastapi import APIRouter
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from app.answer_model import AnswerModel
from app.api.deps import GatewayDep
from app.api.docs import problems
from app.api.security_deps import OptionalPrincipal
from app.security.principal import Principal

router = APIRouter(tags=["providers"])


class CircuitState(StrEnum):
    """A circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitInfo(AnswerModel):
    """The provider's circuit breaker: `open` means calls fail fast for `retry_after` seconds."""

    state: CircuitState
    consecutive_failures: int
    retry_after: int | None


def _is_none(value: object) -> bool:
    return value is None


class ProviderInfo(AnswerModel):
    """One configured provider."""

    name: str
    display_name: str
    unit: str
    circuit: CircuitInfo | SkipJsonSchema[None] = Field(
        default=None,
        description="Only for services (an API key or a service token) and when authentication "
        "is disabled.",
        exclude_if=_is_none,  # left out of the JSON rather than sent as null
    )


class ProviderList(AnswerModel):
    """The configured providers, in answer order."""

    providers: list[ProviderInfo]


def sees_circuits(principal: Principal | None) -> bool:
    """Breaker state is for the backends and operators; an end user's token is not enough."""
    return principal is not None and principal.kind in ("service", "anonymous")


@router.get(
    "/providers",
    operation_id="list_providers",
    summary="The configured providers",
    description="Anyone: each provider's name, display name and unit. A service (an API key or "
    "a service token; everyone when authentication is disabled) also gets each circuit "
    "breaker's state. Credentials that are sent must be valid (401 otherwise); an end user's "
    "token gets the public answer.",
    response_model=ProviderList,
    responses=problems(401, 429),
)
async def list_providers(gateway: GatewayDep, principal: OptionalPrincipal) -> ProviderList:
    """The providers this gateway serves: names, display names, units, and for services circuits."""
    circuits = gateway.circuits() if sees_circuits(principal) else {}
    infos = []
    for name in gateway.registry.names():
        plugin = gateway.registry.plugin(name)
        circuit = None
        if (breaker := circuits.get(name)) is not None:
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

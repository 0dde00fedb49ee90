"""The programs this gateway serves."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import GatewayDep

router = APIRouter(tags=["providers"])


class ProviderInfo(BaseModel):
    """One configured program."""

    name: str
    display_name: str
    unit: str


class ProviderList(BaseModel):
    """The configured programs, in answer order."""

    providers: list[ProviderInfo]


@router.get(
    "/providers",
    operation_id="list_providers",
    summary="The configured programs",
    response_model=ProviderList,
)
async def list_providers(gateway: GatewayDep) -> ProviderList:
    """Names, display names and units of the programs this gateway is configured for."""
    infos = []
    for name in gateway.registry.names():
        plugin, _ = gateway.registry.require(name)
        infos.append(ProviderInfo(name=name, display_name=plugin.display_name, unit=plugin.unit))
    return ProviderList(providers=infos)

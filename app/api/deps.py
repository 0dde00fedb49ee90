"""Tiny accessors that routes depend on; tests swap them with `app.dependency_overrides`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.gateway import Gateway
from app.providers.base import CallContext
from app.request_context import new_request_id, request_id_of


def get_gateway(request: Request) -> Gateway:
    """The gateway instance the lifespan built."""
    gateway = request.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway


def get_call_context(request: Request) -> CallContext:
    """What adapters may pass upstream about this request."""
    return CallContext(request_id=request_id_of(request.scope) or new_request_id())


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CallDep = Annotated[CallContext, Depends(get_call_context)]

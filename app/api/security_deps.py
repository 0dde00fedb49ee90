"""The dependencies that authenticate, rate-limit and authorize every user-scoped route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer

from app.api.deps import GatewayDep, get_gateway
from app.errors import InternalError, InvalidRequest
from app.security.policy import authorize
from app.security.principal import Principal
from app.users import USER_ID_PATTERN, is_user_id

# auto_error off: missing credentials become our own 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="A JWT: `sub` is the user id."
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A service API key.")
# Called by Authorize itself rather than declared as its sub-dependencies: FastAPI spends about
# 15 µs solving each dependency of each request. So the document gets the schemes from here
# (app/openapi_doc.py), for every route that depends on Authorize.
SECURITY_SCHEMES: dict[str, Any] = {
    scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
    for scheme in (_bearer, _api_key)
}
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
# OpenAPI's "no credentials" alternative first: the route answers anonymous callers too.
OPTIONAL_SECURITY: list[dict[str, list[str]]] = [{}, *SECURITY_REQUIREMENT]
# As FastAPI words a path parameter failing its pattern.
_BAD_USER_ID = {
    "loc": ("path", "user_id"),
    "msg": f"String should match pattern '{USER_ID_PATTERN}'",
    "type": "string_pattern_mismatch",
}


class Authorize:
    """Authenticate the caller, count it against its rate limit, check it may act on the user."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:
        gateway = await get_gateway(request)  # not a dependency: one fewer to solve per request
        bearer = await _bearer(request)
        api_key = await _api_key(request)
        authorization = request.headers.get("authorization") if bearer is not None else None
        principal = await gateway.security.authenticate(request, authorization, api_key)
        request.state.principal = principal  # the request log line names who called
        await gateway.security.limit(principal, request)
        user_id = request.path_params["user_id"]
        if not is_user_id(user_id):
            # Checked before the policy (which would answer 403 for an id that is nobody's) and
            # after authentication (an anonymous caller learns nothing about ids): FastAPI
            # validates path parameters only after every dependency has run.
            raise InvalidRequest(
                "The request failed validation; see `errors`.", field_errors=[_BAD_USER_ID]
            )
        authorize(principal, user_id, self.scope)
        return principal


def principal_of(request: Request) -> Principal:
    """The caller that the route's Authorize dependency authenticated."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise InternalError("The route did not authenticate its caller.")
    return principal


async def limit_by_address(request: Request, gateway: GatewayDep) -> None:
    """Public routes: rate-limited per client address."""
    await gateway.security.limit(None, request)


async def optional_principal(request: Request) -> Principal | None:
    """Public routes that show more to some callers: who is calling, or None for nobody.

    No credentials is an anonymous caller (rate-limited per address); credentials sent are
    checked like anywhere else, so bad ones are 401. With authentication disabled every caller
    is the all-scopes anonymous service.
    """
    gateway = await get_gateway(request)
    api_key = await _api_key(request)
    authorization = request.headers.get("authorization") or None
    principal = None
    if not gateway.security.authenticator.enabled or api_key is not None or authorization:
        # Counted like any failed authentication (per client address).
        principal = await gateway.security.authenticate(request, authorization, api_key)
        request.state.principal = principal
    await gateway.security.limit(principal, request)
    return principal


def is_secured(route: APIRoute) -> bool:
    """Whether the route authenticates its callers (depends on an Authorize)."""
    return any(isinstance(dep.call, Authorize) for dep in route.dependant.dependencies)


def takes_credentials(route: APIRoute) -> bool:
    """Whether the route is public but reads credentials when they are sent."""
    return any(dep.call is optional_principal for dep in route.dependant.dependencies)


READ_POINTS = Depends(Authorize("points:read"))
READ_ACCOUNTS = Depends(Authorize("accounts:read"))
WRITE_ACCOUNTS = Depends(Authorize("accounts:write"))
PUBLIC = Depends(limit_by_address)
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]

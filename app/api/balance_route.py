"""The route class of the balance reads: parameters read by hand, not by FastAPI's solver."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import Request

from app.api.deps import get_points_query
from app.api.security_deps import Authorize

PROVIDERS_MAX_LENGTH = 512

Reader = Callable[[Request], Awaitable[object]]


async def _user_id(request: Request) -> object:
    return request.path_params["user_id"]  # Authorize has checked it against its pattern


async def _request(request: Request) -> object:
    return request


async def _providers(request: Request) -> object:
    raw = request.query_params.get("providers")
    if raw is not None and len(raw) > PROVIDERS_MAX_LENGTH:
        # As FastAPI reports the Query(max_length=...) the signature declares.
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("query", "providers"),
                    "msg": f"String should have at most {PROVIDERS_MAX_LENGTH} characters",
                    "input": raw,
                    "ctx": {"max_length": PROVIDERS_MAX_LENGTH},
                }
            ]
        )
    return raw


READERS: dict[str, Reader] = {
    "user_id": _user_id,
    "request": _request,
    "query": get_points_query,
    "providers": _providers,
}


class BalanceRoute(APIRoute):
    """A balance read whose parameters this class reads, in FastAPI's order and by its rules.

    FastAPI solves every declared parameter and dependency of every request; for the balance
    reads (a patterned path parameter, the `providers` filter, Authorize and the PointsQuery)
    that cost about 60 µs of a cached answer's 330 (bench/analysis.md, issue 17), and these
    are the gateway's hot path. So the endpoint is called with what `READERS` read: Authorize
    first (credentials, rate limit, the user id's pattern, the scope), then each parameter in
    the signature's order. The signature still makes the OpenAPI document, and a parameter with
    no reader fails when the route is built, never on a request. `dependency_overrides` do not
    apply to these routes.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        calls = [d.call for d in self.dependant.dependencies]
        authorize = [call for call in calls if isinstance(call, Authorize)]
        if len(authorize) != 1 or any(
            c is not get_points_query for c in calls if c not in authorize
        ):
            raise TypeError(
                f"{self.path}: a balance route depends on one Authorize and nothing else"
            )
        check = authorize[0]
        names = list(inspect.signature(self.endpoint).parameters)
        unread = [name for name in names if name not in READERS]
        if unread:
            raise TypeError(f"{self.path}: no reader for parameter(s) {unread}")
        readers = [(name, READERS[name]) for name in names]
        endpoint: Callable[..., Awaitable[Response]] = self.endpoint

        async def handle(request: Request) -> Response:
            await check(request)
            arguments = {name: await read(request) for name, read in readers}
            return await endpoint(**arguments)

        return handle

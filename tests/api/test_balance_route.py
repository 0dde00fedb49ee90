"""BalanceRoute: the balance reads' parameters read by hand, refused when it cannot read them."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.api.balance_route import BalanceRoute
from app.api.deps import PointsQueryDep, get_gateway
from app.api.security_deps import READ_POINTS
from app.route_walk import leaf_routes
from tests.conftest import AppFactory


async def _ok() -> Response:
    return Response(b"{}")


def _route(endpoint: object, dependencies: list[object]) -> None:
    router = APIRouter(route_class=BalanceRoute)
    router.add_api_route("/users/{user_id}/points", endpoint, dependencies=dependencies)  # type: ignore[arg-type]


def test_a_parameter_without_a_reader_fails_when_the_route_is_built() -> None:
    async def endpoint(user_id: str, page: int = 1) -> Response:
        return await _ok()

    with pytest.raises(TypeError, match=r"no reader for parameter\(s\) \['page'\]"):
        _route(endpoint, [READ_POINTS])


def test_a_route_without_authorize_or_with_another_dependency_is_refused() -> None:
    async def endpoint(user_id: str, request: Request, query: PointsQueryDep) -> Response:
        return await _ok()

    with pytest.raises(TypeError, match="one Authorize and nothing else"):
        _route(endpoint, [])
    with pytest.raises(TypeError, match="one Authorize and nothing else"):
        _route(endpoint, [READ_POINTS, Depends(get_gateway)])


def test_the_points_routes_are_balance_routes(gateway_app: AppFactory) -> None:
    app = gateway_app()
    reads = {
        route.path
        for route in leaf_routes(app.routes)
        if isinstance(route, BalanceRoute) and "GET" in (route.methods or ())
    }
    assert reads == {
        "/users/{user_id}/points",
        "/users/{user_id}/points/benepia",
        "/users/{user_id}/points/gafapay",
        "/users/{user_id}/points/{provider}",
    }

"""Object-level authorization on every user-scoped route.

A user token acts only on its own id; a service (API key or service JWT) acts on any id with the
route's scope. A refused request never reaches a provider and never changes the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from fastapi.routing import APIRoute

from app.main import create_app
from app.route_walk import leaf_routes
from app.users import USER_ID_PATTERN
from tests.conftest import customer_token, make_store
from tests.security.conftest import (
    ALICE_BENEPIA,
    ALL_SCOPES,
    SECURITY_ACCOUNTS,
    Served,
    ServeGateway,
    api_key,
    assert_problem,
    assert_unauthorized,
    bearer,
    claims_for,
    hs256,
    key_with,
    key_without,
    mock_providers,
    secure_settings,
    service_token,
    store_snapshot,
    user_token,
)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    scope: str
    body: dict[str, str] | None
    ok: frozenset[int]

    def path(self, user: str) -> str:
        return self.template.format(user=user)

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}"


# With the customer's own token: the account proves itself, so the scope alone decides here
# (accounts without proof: tests/security/test_ownership.py).
ALICE_GAFAPAY_ACCOUNT = {
    **SECURITY_ACCOUNTS["alice"]["gafapay"],
    "token": customer_token(SECURITY_ACCOUNTS["alice"]["gafapay"]["gafapay_user_id"]),
}
OK, NO_CONTENT, UNKNOWN = frozenset({200}), frozenset({204}), frozenset({404})
# Every provider's own routes, and the hidden `{provider}` forms (an unknown name: 404 for alice).
ROUTES = [
    Route("GET", "/users/{user}/points", "points:read", None, OK),
    Route("GET", "/users/{user}/accounts", "accounts:read", None, OK),
    *(
        route
        for name, body in (("benepia", ALICE_BENEPIA), ("gafapay", ALICE_GAFAPAY_ACCOUNT))
        for route in (
            Route("GET", f"/users/{{user}}/points/{name}", "points:read", None, OK),
            Route("POST", f"/users/{{user}}/points/{name}", "points:read", body, OK),
            Route("PUT", f"/users/{{user}}/accounts/{name}", "accounts:write", body, OK),
            Route("DELETE", f"/users/{{user}}/accounts/{name}", "accounts:write", None, NO_CONTENT),
        )
    ),
    Route("GET", "/users/{user}/points/nope", "points:read", None, UNKNOWN),
    Route("POST", "/users/{user}/points/nope", "points:read", ALICE_BENEPIA, UNKNOWN),
    Route("PUT", "/users/{user}/accounts/nope", "accounts:write", ALICE_BENEPIA, UNKNOWN),
    Route("DELETE", "/users/{user}/accounts/nope", "accounts:write", None, UNKNOWN),
]
ANY_PATTERN_MESSAGE = f"String should match pattern '{USER_ID_PATTERN}'"
by_route = pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])


async def call(gw: Served, route: Route, user: str, headers: dict[str, str]) -> httpx.Response:
    return await gw.client.request(route.method, route.path(user), json=route.body, headers=headers)


async def assert_refused(
    gw: Served, route: Route, user: str, headers: dict[str, str], status: int, code: str
) -> dict[str, object]:
    """The request is refused, no provider is called, and the store is unchanged."""
    before = await store_snapshot(gw.store)
    response = await call(gw, route, user, headers)
    body = assert_problem(response, status, code)
    assert gw.upstream.calls.call_count == 0
    assert await store_snapshot(gw.store) == before
    return body


def test_every_user_scoped_route_is_covered() -> None:
    app = create_app(secure_settings(), store=make_store())
    # Every route served, the ones hidden from the document included.
    user_routes = {
        (method, route.path.replace("{provider}", "nope"))
        for route in leaf_routes(app.routes)
        if isinstance(route, APIRoute) and route.path.startswith("/users/{user_id}")
        for method in route.methods or ()
    }
    covered = {(r.method, r.template.replace("{user}", "{user_id}")) for r in ROUTES}
    assert user_routes == covered


@by_route
async def test_user_token_on_own_id_passes(serve_gateway: ServeGateway, route: Route) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        response = await call(gw, route, "alice", bearer(user_token("alice")))
    assert response.status_code in route.ok, response.text


@by_route
@pytest.mark.parametrize("victim", ["bob", "mallory"])
async def test_user_token_on_another_id_is_forbidden(
    serve_gateway: ServeGateway, route: Route, victim: str
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        body = await assert_refused(
            gw, route, victim, bearer(user_token("alice")), 403, "forbidden"
        )
    # Said the same way whether or not the other user exists: no enumeration.
    assert body["detail"] == "This token may only act on its own user."


@by_route
@pytest.mark.parametrize("credentials", ["own token", "service key"])
async def test_an_invalid_user_id_is_422_whoever_asks(
    serve_gateway: ServeGateway, route: Route, credentials: str
) -> None:
    """An id no user can have is a bad request, not a refusal (README: invalid id is 422)."""
    headers = (
        bearer(user_token("bob")) if credentials == "own token" else api_key(key_with(route.scope))
    )
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        body = await assert_refused(gw, route, "b%20ob", headers, 422, "invalid_request")
    assert body["errors"] == [
        {"loc": ["path", "user_id"], "msg": ANY_PATTERN_MESSAGE, "type": "string_pattern_mismatch"}
    ]


@by_route
async def test_an_invalid_user_id_without_credentials_is_401(
    serve_gateway: ServeGateway, route: Route
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        assert_unauthorized(await call(gw, route, "b%20ob", {}))


@by_route
async def test_service_key_without_the_scope_is_forbidden(
    serve_gateway: ServeGateway, route: Route
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        for user in ("alice", "bob"):
            await assert_refused(
                gw, route, user, api_key(key_without(route.scope)), 403, "forbidden"
            )


@by_route
@pytest.mark.parametrize("user", ["alice", "bob"])
async def test_service_key_with_the_scope_acts_for_any_user(
    serve_gateway: ServeGateway, route: Route, user: str
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        response = await call(gw, route, user, api_key(key_with(route.scope)))
    assert response.status_code in route.ok, response.text


@by_route
async def test_missing_credentials_is_401_with_a_challenge(
    serve_gateway: ServeGateway, route: Route
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        before = await store_snapshot(gw.store)
        response = await call(gw, route, "alice", {})
        assert_unauthorized(response)
        assert gw.upstream.calls.call_count == 0
        assert await store_snapshot(gw.store) == before


@by_route
@pytest.mark.parametrize("user", ["alice", "bob"])
async def test_service_jwt_reads_points_of_anyone_but_cannot_touch_accounts(
    serve_gateway: ServeGateway, route: Route, user: str
) -> None:
    token = service_token("billing-svc", scope="points:read")
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        if route.scope == "points:read":
            response = await call(gw, route, user, bearer(token))
            assert response.status_code in route.ok, response.text
        else:
            await assert_refused(gw, route, user, bearer(token), 403, "forbidden")


@by_route
async def test_service_claim_must_be_boolean_true(
    serve_gateway: ServeGateway, route: Route
) -> None:
    """`"gateway_service": "true"` (a string) is an ordinary user token: its own id only."""
    token = hs256(claims_for("alice", gateway_service="true", scope=" ".join(ALL_SCOPES)))
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        await assert_refused(gw, route, "bob", bearer(token), 403, "forbidden")


async def test_service_jwt_scopes_outside_the_known_set_are_ignored(
    serve_gateway: ServeGateway,
) -> None:
    token = service_token("svc", scope="points:write admin accounts:*")
    route = ROUTES[0]
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        await assert_refused(gw, route, "bob", bearer(token), 403, "forbidden")

"""`GET /providers`: names for anyone, circuit breakers (failure counts) for services only."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import BENEPIA_URL, TOKEN_URL, make_settings, token_ok
from tests.security.conftest import (
    ServeGateway,
    api_key,
    assert_unauthorized,
    bearer,
    key_with,
    secure_settings,
    service_token,
    user_token,
)

PUBLIC_FIELDS = {"name", "display_name", "unit"}


async def _break_benepia(gw_client: httpx.AsyncClient) -> None:
    # One failed call: the circuit has a failure count worth hiding.
    failed = await gw_client.get(
        "/users/alice/points/benepia", headers=api_key(key_with("points:read"))
    )
    assert failed.json()["code"] == "upstream_error", failed.text


def assert_names_only(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    providers = response.json()["providers"]
    assert [p["name"] for p in providers] == ["benepia", "gafapay"]
    for entry in providers:
        assert set(entry) == PUBLIC_FIELDS
    assert "circuit" not in response.text
    assert "consecutive_failures" not in response.text


def circuits(response: httpx.Response) -> dict[str, dict[str, object]]:
    assert response.status_code == 200, response.text
    return {p["name"]: p["circuit"] for p in response.json()["providers"]}


async def test_anonymous_callers_and_end_users_see_names_only(
    serve_gateway: ServeGateway,
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(return_value=httpx.Response(500))
        await _break_benepia(gw.client)
        anonymous = await gw.client.get("/providers")
        as_user = await gw.client.get("/providers", headers=bearer(user_token("alice")))

    assert_names_only(anonymous)
    assert_names_only(as_user)


@pytest.mark.parametrize(
    "credentials",
    [
        lambda: api_key(key_with("points:read")),
        lambda: api_key(key_with("accounts:read")),
        # Minted when the test runs, not at collection: a slow run would see it expired.
        lambda: bearer(service_token(scope="points:read")),
    ],
    ids=["key-points-read", "key-accounts-read", "service-token"],
)
async def test_services_see_the_circuits(
    serve_gateway: ServeGateway, credentials: Callable[[], dict[str, str]]
) -> None:
    headers = credentials()
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(return_value=httpx.Response(500))
        await _break_benepia(gw.client)
        listed = await gw.client.get("/providers", headers=headers)

    shown = circuits(listed)
    assert shown["benepia"]["consecutive_failures"] == 1
    assert shown["gafapay"] == {"state": "closed", "consecutive_failures": 0, "retry_after": None}


@pytest.mark.parametrize(
    "headers",
    [
        api_key("pgk-not-a-key-of-this-gateway"),
        bearer("not.a.jwt"),
        bearer(user_token("alice", exp_in=-3600)),
        {"authorization": "Basic YWxpY2U6c2VjcmV0"},
    ],
    ids=["unknown-key", "garbage-bearer", "expired-token", "basic"],
)
async def test_bad_credentials_are_401_like_elsewhere(
    serve_gateway: ServeGateway, headers: dict[str, str]
) -> None:
    async with serve_gateway() as gw:
        assert_unauthorized(await gw.client.get("/providers", headers=headers))


async def test_with_authentication_disabled_everyone_sees_the_circuits(
    serve_gateway: ServeGateway,
) -> None:
    async with serve_gateway(make_settings()) as gw:
        listed = await gw.client.get("/providers")

    assert set(circuits(listed)) == {"benepia", "gafapay"}
    assert all(c is not None for c in circuits(listed).values())


async def test_the_document_describes_both_shapes(serve_gateway: ServeGateway) -> None:
    async with serve_gateway(secure_settings()) as gw:
        document = (await gw.client.get("/openapi.json")).json()

    info = document["components"]["schemas"]["ProviderInfo"]
    assert "circuit" in info["properties"]
    assert "circuit" not in info["required"]
    operation = document["paths"]["/providers"]["get"]
    assert {} in operation["security"], "credentials are optional"
    assert "401" in operation["responses"]

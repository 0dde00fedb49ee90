"""Rate limits per principal (per client address when anonymous), in memory and on Redis.

Every principal here is a user id of the test's own, so counts on the shared Redis never mix
between tests or runs.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from tests.security.conftest import (
    ServeGateway,
    api_key,
    assert_problem,
    bearer,
    forget_rate_counts,
    key_with,
    secure_settings,
    unique_user,
    user_token,
)
from tests.support.servers import closed_port

LIMIT = "3/minute"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for each limiter backend."""
    if request.param == "memory":
        return {}
    url: str = request.getfixturevalue("shared_redis_url")
    return {"redis_url": url}


@pytest.fixture
def shared_redis_only(shared_redis_url: str) -> dict[str, Any]:
    return {"redis_url": shared_redis_url}


def random_address() -> str:
    """A client address of this test's own (198.18.0.0/15, the benchmarking range)."""
    return f"198.{18 + secrets.randbelow(2)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


def assert_rate_limited(response: httpx.Response) -> None:
    body = assert_problem(response, 429, "rate_limited")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    # A sliding window: a full window's count fades over the next one, so up to two minutes.
    assert 1 <= int(retry_after) <= 120
    assert body["retry_after"] == int(retry_after)
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "0"
    reset = response.headers["ratelimit-reset"]
    assert reset.isdigit(), reset
    assert 1 <= int(reset) <= 120


async def test_fourth_request_of_a_principal_is_429(
    serve_gateway: ServeGateway, backend: dict[str, Any]
) -> None:
    user, other = unique_user(), unique_user()
    settings = secure_settings(limits={"rate": LIMIT}, **backend)
    async with serve_gateway(settings) as gw:
        for _ in range(3):
            ok = await gw.client.get(f"/users/{user}/accounts", headers=bearer(user_token(user)))
            assert ok.status_code == 200, ok.text
        limited = await gw.client.get(f"/users/{user}/accounts", headers=bearer(user_token(user)))
        assert_rate_limited(limited)
        # Any route counts against the same principal.
        points = await gw.client.get(f"/users/{user}/points", headers=bearer(user_token(user)))
        assert_rate_limited(points)
        # Someone else is not affected.
        for _ in range(3):
            theirs = await gw.client.get(
                f"/users/{other}/accounts", headers=bearer(user_token(other))
            )
            assert theirs.status_code == 200, theirs.text


async def test_api_key_principals_are_limited_per_key(
    serve_gateway: ServeGateway, backend: dict[str, Any]
) -> None:
    """One key across many users is one principal."""
    url = backend.get("redis_url")
    if isinstance(url, str):
        # The key is fixed, so its count on the shared Redis would outlive an earlier run.
        forget_rate_counts(url, "service:only-accounts-read/")
    settings = secure_settings(limits={"rate": LIMIT}, **backend)
    key = key_with("accounts:read")
    async with serve_gateway(settings) as gw:
        answers = [
            await gw.client.get(f"/users/{unique_user()}/accounts", headers=api_key(key))
            for _ in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert_rate_limited(answers[-1])


async def test_refused_credentials_are_not_counted_for_the_user(
    serve_gateway: ServeGateway, backend: dict[str, Any]
) -> None:
    user = unique_user()
    settings = secure_settings(limits={"rate": LIMIT}, **backend)
    async with serve_gateway(settings) as gw:
        for _ in range(5):
            refused = await gw.client.get(
                f"/users/{user}/accounts", headers=bearer(user_token(user, exp_in=-600))
            )
            assert refused.status_code == 401
        ok = await gw.client.get(f"/users/{user}/accounts", headers=bearer(user_token(user)))
        assert ok.status_code == 200, ok.text


async def test_providers_is_limited_per_client_address(
    serve_gateway: ServeGateway, backend: dict[str, Any]
) -> None:
    settings = secure_settings(limits={"rate": LIMIT}, **backend)
    first, second = random_address(), random_address()
    while second == first:
        second = random_address()
    async with (
        serve_gateway(settings) as gw,
        gw.client_at(first) as a,
        gw.client_at(second) as b,
    ):
        for _ in range(3):
            ok = await a.get("/providers")
            assert ok.status_code == 200, ok.text
        assert_rate_limited(await a.get("/providers"))
        for _ in range(3):
            theirs = await b.get("/providers")
            assert theirs.status_code == 200, theirs.text


async def test_health_routes_are_not_limited(
    serve_gateway: ServeGateway, backend: dict[str, Any]
) -> None:
    settings = secure_settings(limits={"rate": LIMIT}, **backend)
    async with serve_gateway(settings) as gw, gw.client_at(random_address()) as client:
        for _ in range(6):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200


async def test_limit_is_shared_across_instances_on_redis(
    serve_gateway: ServeGateway, shared_redis_only: dict[str, Any]
) -> None:
    user = unique_user()
    headers = bearer(user_token(user))
    settings = secure_settings(limits={"rate": LIMIT}, **shared_redis_only)
    async with serve_gateway(settings) as a, serve_gateway(settings) as b:
        assert a.app is not b.app
        for gw in (a, a, b):
            ok = await gw.client.get(f"/users/{user}/accounts", headers=headers)
            assert ok.status_code == 200, ok.text
        assert_rate_limited(await b.client.get(f"/users/{user}/accounts", headers=headers))
        assert_rate_limited(await a.client.get(f"/users/{user}/accounts", headers=headers))


async def test_memory_limits_are_per_instance(serve_gateway: ServeGateway) -> None:
    user = unique_user()
    headers = bearer(user_token(user))
    settings = secure_settings(limits={"rate": LIMIT})
    async with serve_gateway(settings) as a, serve_gateway(settings) as b:
        for gw in (a, a, a, b, b, b):
            ok = await gw.client.get(f"/users/{user}/accounts", headers=headers)
            assert ok.status_code == 200, ok.text


async def test_unreachable_redis_does_not_limit_and_never_500(
    serve_gateway: ServeGateway,
) -> None:
    user = unique_user()
    settings = secure_settings(
        limits={"rate": LIMIT}, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
    )
    started = time.monotonic()
    async with serve_gateway(settings) as gw:
        for _ in range(6):
            ok = await gw.client.get(f"/users/{user}/accounts", headers=bearer(user_token(user)))
            assert ok.status_code == 200, ok.text
        async with gw.client_at(random_address()) as anonymous:
            for _ in range(6):
                listed = await anonymous.get("/providers")
                assert listed.status_code == 200, listed.text
    assert time.monotonic() - started < 10, "an unreachable Redis must not stall requests"

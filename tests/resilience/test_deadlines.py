"""Deadlines: the settings default, lowered by Request-Timeout, capped; retries fit inside them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from app.settings import Settings
from tests.conftest import (
    ALICE_GAFAPAY,
    CURRENCY,
    GAFAPAY,
    IAMPORT,
    PROBLEM,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)
from tests.resilience.conftest import gafapay_timeout_providers

ALICE = "/users/alice/points"
ALICE_GAFAPAY_ROUTE = "/users/alice/points/gafapay"
BOB_GAFAPAY_ROUTE = "/users/bob/points/gafapay"
ALICE_GAFAPAY_ACCOUNT = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
GUARD = 1.5  # a hang guard, not a timing assertion

RETRYING: dict[str, object] = {
    "retry_attempts": 2,
    "retry_wait_initial": 0.01,
    "retry_wait_max": 0.05,
    "breaker_consecutive_failures": 1_000_000,
    "breaker_min_calls": 1_000_000,
}


def settings(*, gafapay_timeout: float | None = None, **overrides: object) -> Settings:
    """Test settings with retries on (and GafaPay's timeout replaced if given)."""
    values: dict[str, object] = {"resilience": RETRYING, **overrides}
    if gafapay_timeout is not None:
        values["providers"] = gafapay_timeout_providers(gafapay_timeout)
    return make_settings(IAMPORT, GAFAPAY, **values)


class SlowGafapay:
    """A GafaPay that takes `seconds` to answer, and notes when the gateway gave up on it."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self.cancelled = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return gafapay_ok(user_id=request.url.params["user_id"])


def assert_gafapay_timed_out(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["x-points-complete"] == "false"
    body = r.json()
    assert body["complete"] is False
    benepia, gafapay = body["balances"]
    assert benepia["status"] == "ok"
    assert benepia["points"] == "12000"
    assert gafapay["status"] == "error"
    assert gafapay["error"]["code"] == "upstream_timeout"
    assert gafapay["error"]["status"] == 504
    assert gafapay["error"]["provider"] == "gafapay"


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


# --- Request-Timeout ---------------------------------------------------------------------------


async def test_request_timeout_cuts_a_slow_provider(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    slow = SlowGafapay(2.0)
    mock_upstreams(upstream, gafapay=slow)
    async with serve_in_process(gateway_app(settings())) as client:
        r = await asyncio.wait_for(client.get(ALICE, headers={"request-timeout": "0.3"}), GUARD)
    assert_gafapay_timed_out(r)
    assert slow.cancelled.is_set()


async def test_request_timeout_is_capped_by_request_deadline_max(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=SlowGafapay(2.0))
    config = settings(request_deadline_max=0.3)
    async with serve_in_process(gateway_app(config)) as client:
        r = await asyncio.wait_for(client.get(ALICE, headers={"request-timeout": "10"}), GUARD)
    assert_gafapay_timed_out(r)


async def test_settings_deadline_applies_without_the_header(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=SlowGafapay(2.0))
    async with serve_in_process(gateway_app(settings(request_deadline=0.3))) as client:
        r = await asyncio.wait_for(client.get(ALICE), GUARD)
    assert_gafapay_timed_out(r)


async def test_provider_timeout_still_applies_under_a_long_request_timeout(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=SlowGafapay(2.0))
    async with serve_in_process(gateway_app(settings(gafapay_timeout=0.3))) as client:
        r = await asyncio.wait_for(client.get(ALICE, headers={"request-timeout": "20"}), GUARD)
    assert_gafapay_timed_out(r)


async def test_request_timeout_on_the_single_program_route(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=SlowGafapay(2.0))
    async with serve_in_process(gateway_app(settings())) as client:
        got = await asyncio.wait_for(
            client.get(ALICE_GAFAPAY_ROUTE, headers={"request-timeout": "0.3"}), GUARD
        )
        posted = await asyncio.wait_for(
            client.post(
                ALICE_GAFAPAY_ROUTE,
                json=ALICE_GAFAPAY_ACCOUNT,
                headers={"request-timeout": "0.3"},
            ),
            GUARD,
        )
    for r in (got, posted):
        body = problem(r, 504, "upstream_timeout")
        assert body["provider"] == "gafapay"
        assert "retry-after" not in r.headers


async def test_every_provider_missing_the_deadline_is_504(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def slow_benepia(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return benepia_ok()

    mock_upstreams(upstream, benepia=slow_benepia, gafapay=SlowGafapay(2.0))
    async with serve_in_process(gateway_app(settings())) as client:
        r = await asyncio.wait_for(client.get(ALICE, headers={"request-timeout": "0.3"}), GUARD)
    body = problem(r, 504, "upstream_timeout")
    assert [b["error"]["code"] for b in body["balances"]] == ["upstream_timeout"] * 2


@pytest.mark.parametrize("value", ["2", "0.5", " 1.5 ", "1e1"])
async def test_valid_request_timeout_values(
    gateway_app: AppFactory, upstream: respx.MockRouter, value: str
) -> None:
    mock_upstreams(upstream)
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(ALICE, headers={"request-timeout": value})
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True


@pytest.mark.parametrize(
    "value", ["abc", "-1", "0", "0.0", "-0", "nan", "NaN", "inf", "-inf", "1e999", "", "1s"]
)
@pytest.mark.parametrize("method", ["GET merged", "GET single", "POST one-shot"])
async def test_invalid_request_timeout_is_422(
    gateway_app: AppFactory, upstream: respx.MockRouter, value: str, method: str
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    headers = {"request-timeout": value}
    async with serve_in_process(gateway_app(settings())) as client:
        if method == "GET merged":
            r = await client.get(ALICE, headers=headers)
        elif method == "GET single":
            r = await client.get(ALICE_GAFAPAY_ROUTE, headers=headers)
        else:
            r = await client.post(ALICE_GAFAPAY_ROUTE, json=ALICE_GAFAPAY_ACCOUNT, headers=headers)
    body = problem(r, 422, "invalid_request")
    assert "Request-Timeout" in body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert tokens.call_count == point.call_count == gafa.call_count == 0


# --- retries inside the deadline ---------------------------------------------------------------


async def test_no_retry_when_retry_after_exceeds_the_provider_timeout(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(
        upstream, gafapay=httpx.Response(429, headers={"retry-after": "1"}, text="slow down")
    )
    async with serve_in_process(gateway_app(settings(gafapay_timeout=0.5))) as client:
        r = await asyncio.wait_for(client.get(BOB_GAFAPAY_ROUTE), GUARD)
    body = problem(r, 503, "upstream_rate_limited")
    assert r.headers["retry-after"] == "1"
    assert body["retry_after"] == 1
    assert gafa.call_count == 1


async def test_no_retry_when_the_first_attempt_used_the_time(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def late_failure(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.46)
        return httpx.Response(503, text="down")

    _, _, gafa = mock_upstreams(upstream, gafapay=late_failure)
    # 0.04 s left of the provider's 0.5 s: too little for another attempt.
    async with serve_in_process(gateway_app(settings(gafapay_timeout=0.5))) as client:
        r = await asyncio.wait_for(client.get(BOB_GAFAPAY_ROUTE), GUARD)
    body = problem(r, 502, "upstream_error")
    assert body["upstream_status"] == 503
    assert gafa.call_count == 1


async def test_no_retry_when_the_first_attempt_used_the_request_timeout(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def late_failure(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.46)
        return httpx.Response(503, text="down")

    _, _, gafa = mock_upstreams(upstream, gafapay=late_failure)
    async with serve_in_process(gateway_app(settings())) as client:
        r = await asyncio.wait_for(
            client.get(BOB_GAFAPAY_ROUTE, headers={"request-timeout": "0.5"}), GUARD
        )
    # 0.04 s left of the client's 0.5 s: the failure is answered, not slept on.
    body = problem(r, 502, "upstream_error")
    assert body["upstream_status"] == 503
    assert gafa.call_count == 1


async def test_no_retry_when_retry_after_exceeds_the_request_timeout(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(
        upstream, gafapay=httpx.Response(429, headers={"retry-after": "1"}, text="slow down")
    )
    async with serve_in_process(gateway_app(settings(gafapay_timeout=4.0))) as client:
        r = await asyncio.wait_for(
            client.get(BOB_GAFAPAY_ROUTE, headers={"request-timeout": "0.5"}), GUARD
        )
    assert gafa.call_count == 1
    body = problem(r, 503, "upstream_rate_limited")
    assert r.headers["retry-after"] == "1"
    assert body["retry_after"] == 1

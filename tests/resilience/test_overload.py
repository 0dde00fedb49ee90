"""Overload: the per-provider bulkhead and the gateway-wide cap on requests in flight."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from app.errors import ProviderUnavailable
from app.resilience.bulkhead import Bulkhead
from tests.conftest import (
    ALICE_GAFAPAY,
    CURRENCY,
    PROBLEM,
    AppFactory,
    gafapay_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)

ALICE_GAFAPAY_ACCOUNT = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
ALICE_GAFAPAY_ROUTE = "/users/alice/points/gafapay"
BOB_GAFAPAY_ROUTE = "/users/bob/points/gafapay"


class HeldUpstream:
    """A GafaPay that holds every call until released, and tells when `n` calls are waiting."""

    def __init__(self, n: int) -> None:
        self.expected = n
        self.waiting = 0
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.waiting += 1
        if self.waiting >= self.expected:
            self.arrived.set()
        await asyncio.wait_for(self.release.wait(), 5)
        return gafapay_ok(user_id=request.url.params["user_id"])


# --- the per-provider bulkhead ---------------------------------------------------------------


async def test_bulkhead_full_answers_503_provider_unavailable(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    held = HeldUpstream(2)
    _, _, gafa = mock_upstreams(upstream, gafapay=held)
    config = make_settings(resilience={"retry_attempts": 1, "provider_max_in_flight": 2})
    async with serve_in_process(gateway_app(config)) as client:
        # One-shot POSTs: never shared, so each is its own upstream call.
        first = [
            asyncio.create_task(client.post(ALICE_GAFAPAY_ROUTE, json=ALICE_GAFAPAY_ACCOUNT))
            for _ in range(2)
        ]
        await asyncio.wait_for(held.arrived.wait(), 2)
        third = await asyncio.wait_for(
            client.post(ALICE_GAFAPAY_ROUTE, json=ALICE_GAFAPAY_ACCOUNT), 2
        )
        # ...and the other provider is not affected by GafaPay's full bulkhead.
        benepia = await asyncio.wait_for(client.get("/users/alice/points/benepia"), 2)
        held.release.set()
        done = await asyncio.wait_for(asyncio.gather(*first), 2)
        circuit = (await client.get("/providers")).json()["providers"][1]["circuit"]
    assert third.status_code == 503, third.text
    assert third.headers["content-type"] == PROBLEM
    body = third.json()
    assert body["code"] == "provider_unavailable"
    assert body["provider"] == "gafapay"
    assert third.headers["retry-after"] == "1"
    assert body["retry_after"] == 1
    assert body["request_id"] == third.headers["x-request-id"]
    assert benepia.status_code == 200, benepia.text
    assert [r.status_code for r in done] == [200, 200]
    assert gafa.call_count == 2
    # A full bulkhead says nothing about the provider's health.
    assert circuit["state"] == "closed"
    assert circuit["consecutive_failures"] == 0


async def test_bulkhead_full_in_the_merged_answer(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    held = HeldUpstream(1)
    mock_upstreams(upstream, gafapay=held)
    config = make_settings(resilience={"retry_attempts": 1, "provider_max_in_flight": 1})
    async with serve_in_process(gateway_app(config)) as client:
        bob = asyncio.create_task(client.get(BOB_GAFAPAY_ROUTE))
        await asyncio.wait_for(held.arrived.wait(), 2)
        r = await asyncio.wait_for(client.get("/users/alice/points"), 2)
        held.release.set()
        assert (await asyncio.wait_for(bob, 2)).status_code == 200
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["complete"] is False
    benepia, gafapay = body["balances"]
    assert benepia["status"] == "ok"
    assert gafapay["error"]["code"] == "provider_unavailable"
    assert gafapay["error"]["retry_after"] == 1


def test_unit_bulkhead_frees_its_slot() -> None:
    bulkhead = Bulkhead("gafapay", 1)
    with bulkhead.slot():
        assert bulkhead.in_flight == 1
        with pytest.raises(ProviderUnavailable) as caught, bulkhead.slot():
            pass
        assert caught.value.retry_after == 1
        assert caught.value.provider == "gafapay"
    assert bulkhead.in_flight == 0
    with pytest.raises(RuntimeError), bulkhead.slot():
        raise RuntimeError("the call failed")
    assert bulkhead.in_flight == 0


# --- the gateway-wide cap --------------------------------------------------------------------


async def test_gateway_sheds_load_past_its_cap(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    held = HeldUpstream(2)
    _, _, gafa = mock_upstreams(upstream, gafapay=held)
    config = make_settings(resilience={"retry_attempts": 1, "max_in_flight_requests": 2})
    async with serve_in_process(gateway_app(config)) as client:
        slow = [
            asyncio.create_task(client.get(route))
            for route in (ALICE_GAFAPAY_ROUTE, BOB_GAFAPAY_ROUTE)
        ]
        await asyncio.wait_for(held.arrived.wait(), 2)
        shed = await asyncio.wait_for(
            client.get("/users/carol/points", headers={"x-request-id": "shed-me-1"}), 2
        )
        # Answered while the two admitted requests are still waiting on their upstream.
        assert not any(task.done() for task in slow)
        # Probes are exempt: an overloaded instance is alive.
        health = await asyncio.wait_for(client.get("/healthz"), 2)
        ready = await asyncio.wait_for(client.get("/readyz"), 2)
        held.release.set()
        done = await asyncio.wait_for(asyncio.gather(*slow), 2)
        # The cap counts requests in flight, not requests ever made.
        after = await asyncio.wait_for(client.get("/users/carol/points"), 2)
    assert shed.status_code == 503, shed.text
    assert shed.headers["content-type"] == PROBLEM
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["x-request-id"] == "shed-me-1"
    body = shed.json()
    assert body["code"] == "overloaded"
    assert body["status"] == 503
    assert body["type"] == "urn:points-gateway:problem:overloaded"
    assert body["retry_after"] == 1
    assert health.status_code == 200
    assert ready.status_code == 200
    assert [r.status_code for r in done] == [200, 200]
    assert after.status_code == 200, after.text
    assert gafa.call_count == 2


async def test_shed_request_mints_a_request_id(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    held = HeldUpstream(1)
    mock_upstreams(upstream, gafapay=held)
    config = make_settings(resilience={"retry_attempts": 1, "max_in_flight_requests": 1})
    async with serve_in_process(gateway_app(config)) as client:
        slow = asyncio.create_task(client.get(BOB_GAFAPAY_ROUTE))
        await asyncio.wait_for(held.arrived.wait(), 2)
        shed = [await client.get("/providers"), await client.get("/openapi.json")]
        held.release.set()
        await asyncio.wait_for(slow, 2)
    for r in shed:
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "overloaded"
        assert len(r.headers["x-request-id"]) >= 8
    assert shed[0].headers["x-request-id"] != shed[1].headers["x-request-id"]

"""Faults end to end, with resilience on: real uvicorn, the production (aiohttp) transport.

The emulators run once for the module; each test starts a gateway of its own against them,
with the cache, retry and breaker settings it is about (the session stack runs PLAIN).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.sandbox.demo import ALICE_GAFAPAY, demo_accounts, demo_sandboxes
from app.sandbox.gafapay import USER_POINTS, create_gafapay_app
from app.sandbox.iamport import BENEPIA_POINT, GET_TOKEN, create_iamport_app
from app.sandbox.servers import Served, bind
from app.settings import Settings
from tests.support.servers import (
    CLIENT_TIMEOUT,
    HOST,
    Stack,
    assert_problem,
    entries,
    gateway_settings,
    serving,
    set_fault,
)

pytestmark = pytest.mark.integration

PROVIDER_TIMEOUT = 1.0
REQUEST_DEADLINE = 2.0
BREAKER_THRESHOLD = 3
BREAKER_OPEN = 1.0
# Resilience on, as in production, with small numbers so each behaviour shows quickly.
RESILIENCE: dict[str, object] = {
    "retry_attempts": 2,
    "breaker_consecutive_failures": BREAKER_THRESHOLD,
    "breaker_open_seconds": BREAKER_OPEN,
}
BREAKER_OFF: dict[str, object] = {
    "breaker_consecutive_failures": 1_000_000,
    "breaker_min_calls": 1_000_000,
}
NO_CACHE: dict[str, object] = {"ttl": 0, "stale_if_error": 0}
ALICE = "/users/alice/points"
ALICE_GAFAPAY_ROUTE = "/users/alice/points/gafapay"
ALICE_BENEPIA_ROUTE = "/users/alice/points/benepia"


@pytest.fixture(scope="module")
def emulators() -> Iterator[Stack]:
    """Both emulators with the demo accounts, for the module (gateway_url: none yet)."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = Served(create_iamport_app(iamport), bind(HOST, 0))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(HOST, 0))
    with serving([iamport_app, gafapay_app]):
        yield Stack("", iamport_app.url, gafapay_app.url, iamport, gafapay)


@pytest.fixture
def upstreams(emulators: Stack) -> Iterator[Stack]:
    """The emulators with faults and counters cleared around the test."""
    emulators.iamport.reset()
    emulators.gafapay.reset()
    yield emulators
    emulators.iamport.reset()
    emulators.gafapay.reset()


def resilient_settings(
    upstreams: Stack,
    *,
    provider_timeout: float = PROVIDER_TIMEOUT,
    deadline: float = REQUEST_DEADLINE,
    cache: dict[str, object] | None = None,
    **resilience: object,
) -> Settings:
    """The integration settings (gateway_settings) with resilience back on, as given."""
    base = gateway_settings(upstreams.iamport_url, upstreams.gafapay_url)
    providers = copy.deepcopy(base.providers)
    for section in providers.values():
        section["timeout"] = provider_timeout
    return Settings.model_validate(
        {
            **base.model_dump(),
            "providers": providers,
            "request_deadline": deadline,
            "cache": cache if cache is not None else NO_CACHE,
            "resilience": {**RESILIENCE, **resilience},
        }
    )


@asynccontextmanager
async def gateway(upstreams: Stack, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway of this test's own (resilient_settings(**options)), and a client of it."""
    settings = resilient_settings(upstreams, **options)
    served = Served(create_app(settings, store=MemoryAccountStore(demo_accounts())), bind(HOST, 0))
    with serving([served]):
        async with httpx.AsyncClient(base_url=served.url, timeout=CLIENT_TIMEOUT) as client:
            yield client


async def calls(base_url: str, endpoint: str) -> int:
    """An emulator's request count for `endpoint`, from its own /__sandbox/stats."""
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as admin:
        resp = await admin.get("/__sandbox/stats")
    assert resp.status_code == 200, resp.text
    count = resp.json()["calls"][endpoint]
    assert isinstance(count, int)
    return count


async def admin_post(base_url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as admin:
        resp = await admin.post(path)
    assert resp.status_code == 200, resp.text


async def clear_faults(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as admin:
        resp = await admin.delete("/__sandbox/faults")
    assert resp.status_code == 200, resp.text


async def circuit(client: httpx.AsyncClient, provider: str) -> dict[str, Any]:
    resp = await client.get("/providers")
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = {p["name"]: p["circuit"] for p in resp.json()["providers"]}[provider]
    return found


def ok_entry(entry: dict[str, Any], points: str) -> None:
    assert entry["status"] == "ok", entry
    assert entry["points"] == points
    assert entry["error"] is None


# --- a hung provider ----------------------------------------------------------------------------


async def test_hung_gafapay_times_out_and_benepia_still_answers(upstreams: Stack) -> None:
    await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, hang=True)

    async with gateway(upstreams) as client:
        started = time.monotonic()
        resp = await client.get(ALICE)
        elapsed = time.monotonic() - started

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["complete"] is False
    by_name = entries(body)
    ok_entry(by_name["benepia"], "12000")
    gafapay = by_name["gafapay"]
    assert gafapay["status"] == "error"
    assert gafapay["error"]["code"] == "upstream_timeout"
    assert gafapay["error"]["status"] == 504
    # Only the provider timeout ended the wait: the emulator never answers a hung request.
    assert PROVIDER_TIMEOUT * 0.9 <= elapsed < REQUEST_DEADLINE + 1.0, elapsed
    assert await calls(upstreams.gafapay_url, USER_POINTS) == 1  # a timeout is not retried


# --- a 500 storm opens the breaker --------------------------------------------------------------


async def test_a_500_storm_opens_the_breaker_and_it_closes_again(upstreams: Stack) -> None:
    await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=500)

    async with gateway(upstreams) as client:
        opened_after = 0
        for sent in range(1, 3 * BREAKER_THRESHOLD):
            resp = await client.get(ALICE_GAFAPAY_ROUTE)
            assert_problem(resp, 502, "upstream_error")
            assert resp.json()["upstream_status"] == 500
            if (await circuit(client, "gafapay"))["state"] == "open":
                opened_after = sent
                break
        assert opened_after == BREAKER_THRESHOLD
        upstream_calls = await calls(upstreams.gafapay_url, USER_POINTS)
        assert upstream_calls == BREAKER_THRESHOLD  # a 500 is not retried

        for _ in range(5):
            resp = await client.get(ALICE_GAFAPAY_ROUTE)
            body = assert_problem(resp, 503, "provider_unavailable")
            assert body["provider"] == "gafapay"
            assert resp.headers["retry-after"] == "1"
            assert body["retry_after"] == 1
        assert await calls(upstreams.gafapay_url, USER_POINTS) == upstream_calls

        await clear_faults(upstreams.gafapay_url)
        await asyncio.sleep(BREAKER_OPEN + 0.2)
        resp = await client.get(ALICE_GAFAPAY_ROUTE)
        assert resp.status_code == 200, resp.text
        ok_entry(resp.json(), "250.0")
        state = await circuit(client, "gafapay")

    assert state == {"state": "closed", "consecutive_failures": 0, "retry_after": None}
    assert await calls(upstreams.gafapay_url, USER_POINTS) == upstream_calls + 1


# --- tokens expire under steady traffic ---------------------------------------------------------


async def test_token_expiry_in_steady_traffic_costs_one_refresh(upstreams: Stack) -> None:
    statuses: list[int] = []
    async with gateway(upstreams) as client:
        for sent in range(30):
            if sent == 10:
                tokens_at_expiry = await calls(upstreams.iamport_url, GET_TOKEN)
                await admin_post(upstreams.iamport_url, "/__sandbox/expire-tokens")
            resp = await client.get(ALICE_BENEPIA_ROUTE)
            statuses.append(resp.status_code)
            assert resp.status_code == 200, resp.text
            ok_entry(resp.json(), "12000")
            assert resp.json()["cached"] is False

    assert statuses == [200] * 30
    assert tokens_at_expiry == 1  # one token served the first ten
    assert await calls(upstreams.iamport_url, GET_TOKEN) == tokens_at_expiry + 1
    # One refused call with the expired token, then the same call again with the new one.
    assert await calls(upstreams.iamport_url, BENEPIA_POINT) == 30 + 1


# --- 429 and Retry-After ------------------------------------------------------------------------


async def test_a_429_is_retried_after_its_retry_after(upstreams: Stack) -> None:
    await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=429, retry_after=1, times=1)

    # Room for the one-second wait inside the provider timeout and the deadline.
    async with gateway(upstreams, provider_timeout=2.5, deadline=3.0) as client:
        started = time.monotonic()
        resp = await client.get(ALICE_GAFAPAY_ROUTE)
        elapsed = time.monotonic() - started

    assert resp.status_code == 200, resp.text
    ok_entry(resp.json(), "250.0")
    assert await calls(upstreams.gafapay_url, USER_POINTS) == 2
    # No emulator timestamps: the whole answer taking >= 1 s bounds the gap between the calls.
    assert elapsed >= 1.0, elapsed


async def test_a_429_asking_for_more_than_the_deadline_is_answered_at_once(
    upstreams: Stack,
) -> None:
    await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=429, retry_after=10, times=1)

    async with gateway(upstreams, provider_timeout=2.5, deadline=3.0) as client:
        started = time.monotonic()
        resp = await client.get(ALICE_GAFAPAY_ROUTE)
        elapsed = time.monotonic() - started

    body = assert_problem(resp, 503, "upstream_rate_limited")
    assert body["provider"] == "gafapay"
    assert body["upstream_status"] == 429
    assert resp.headers["retry-after"] == "10"
    assert body["retry_after"] == 10
    assert await calls(upstreams.gafapay_url, USER_POINTS) == 1
    assert elapsed < 1.0, elapsed  # it did not wait out any of the ten seconds


# --- the retry budget under a sustained outage --------------------------------------------------


async def test_retries_stay_within_the_budget_in_a_sustained_outage(upstreams: Stack) -> None:
    requests = 50
    await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=503)

    async with gateway(upstreams, **BREAKER_OFF) as client:
        for _ in range(requests):
            resp = await client.get(ALICE_GAFAPAY_ROUTE)
            body = assert_problem(resp, 502, "upstream_error")
            assert body["upstream_status"] == 503
        state = await circuit(client, "gafapay")

    upstream_calls = await calls(upstreams.gafapay_url, USER_POINTS)
    # Reserve 3, plus 0.2 of a retry per call (app.resilience.retry_budget defaults).
    assert requests + 1 <= upstream_calls <= requests + 3 + 0.2 * requests
    assert state["state"] == "closed"


# --- stale-if-error -----------------------------------------------------------------------------


async def test_a_stale_balance_is_served_when_the_provider_fails(upstreams: Stack) -> None:
    async with gateway(upstreams, cache={"ttl": 0.3, "stale_if_error": 30}) as client:
        first = await client.get(ALICE)
        assert first.status_code == 200, first.text
        fetched = entries(first.json())["gafapay"]
        ok_entry(fetched, "250.0")
        assert fetched["cached"] is False

        await asyncio.sleep(0.45)
        await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=500)
        resp = await client.get(ALICE)
        single = await client.get(ALICE_GAFAPAY_ROUTE)

    assert resp.status_code == 200, resp.text
    assert resp.json()["complete"] is True
    by_name = entries(resp.json())
    gafapay = by_name["gafapay"]
    ok_entry(gafapay, "250.0")
    assert (gafapay["cached"], gafapay["stale"]) == (True, True)
    assert gafapay["as_of"] == fetched["as_of"]
    ok_entry(by_name["benepia"], "12000")
    assert (by_name["benepia"]["cached"], by_name["benepia"]["stale"]) == (False, False)
    assert single.status_code == 200, single.text
    assert (single.json()["cached"], single.json()["stale"]) == (True, True)
    assert single.json()["as_of"] == fetched["as_of"]
    assert await calls(upstreams.gafapay_url, USER_POINTS) == 3  # it was asked each time


async def test_a_balance_older_than_stale_if_error_is_not_served(upstreams: Stack) -> None:
    async with gateway(upstreams, cache={"ttl": 0.3, "stale_if_error": 0.5}) as client:
        first = await client.get(ALICE_GAFAPAY_ROUTE)
        assert first.status_code == 200, first.text
        ok_entry(first.json(), "250.0")

        await asyncio.sleep(0.3 + 0.5 + 0.2)
        await set_fault(upstreams.gafapay_url, ALICE_GAFAPAY, status=500)
        single = await client.get(ALICE_GAFAPAY_ROUTE)
        merged = await client.get(ALICE)

    body = assert_problem(single, 502, "upstream_error")
    assert body["provider"] == "gafapay"
    assert body["upstream_status"] == 500
    assert merged.status_code == 200, merged.text
    assert merged.json()["complete"] is False
    gafapay = entries(merged.json())["gafapay"]
    assert gafapay["status"] == "error"
    assert gafapay["points"] is None
    assert gafapay["error"]["code"] == "upstream_error"

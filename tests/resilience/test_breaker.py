"""Circuit breakers per provider: open on failures, fail fast, probe, close; shown in /providers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import respx

from app.errors import ProviderUnavailable
from app.resilience.breaker import BreakerPolicy, CircuitBreaker
from app.settings import Settings
from tests.conftest import (
    PROBLEM,
    AppFactory,
    make_settings,
    mock_upstreams,
    serve_in_process,
)
from tests.resilience.conftest import bob_ok, gafapay_timeout_providers

BOB_GAFAPAY = "/users/bob/points/gafapay"
CAROL_BENEPIA = "/users/carol/points/benepia"
OPEN_FOR = 0.5

# Three consecutive failures open the breaker for half a second; no retries, no rate rule.
BREAKING: dict[str, object] = {
    "retry_attempts": 1,
    "breaker_consecutive_failures": 3,
    "breaker_open_seconds": OPEN_FOR,
    "breaker_min_calls": 1_000_000,
}


def settings(
    *, gafapay_timeout: float | None = None, resilience: Mapping[str, object] | None = None
) -> Settings:
    """Test settings with the breaker on (and GafaPay's timeout replaced if given)."""
    policy = {**BREAKING, **(resilience or {})}
    if gafapay_timeout is None:
        return make_settings(resilience=policy)
    return make_settings(resilience=policy, providers=gafapay_timeout_providers(gafapay_timeout))


def failed() -> httpx.Response:
    return httpx.Response(500, text="boom")


async def circuit(client: httpx.AsyncClient, provider: str) -> dict[str, Any]:
    r = await client.get("/providers")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = {p["name"]: p["circuit"] for p in r.json()["providers"]}[provider]
    return found


def assert_fails_fast(r: httpx.Response, provider: str) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["code"] == "provider_unavailable"
    assert body["provider"] == provider
    assert int(r.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(r.headers["retry-after"])
    return body


# --- through the API -------------------------------------------------------------------------


async def test_consecutive_failures_open_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=failed())
    async with serve_in_process(gateway_app(settings())) as client:
        assert await circuit(client, "gafapay") == {
            "state": "closed",
            "consecutive_failures": 0,
            "retry_after": None,
        }
        for _ in range(3):
            r = await client.get(BOB_GAFAPAY)
            assert r.status_code == 502, r.text
        assert gafa.call_count == 3
        assert_fails_fast(await client.get(BOB_GAFAPAY), "gafapay")
        assert_fails_fast(await client.get("/users/alice/points/gafapay"), "gafapay")
        # While open, the upstream sees no traffic.
        assert gafa.call_count == 3
        shown = await circuit(client, "gafapay")
        assert shown["state"] == "open"
        assert shown["consecutive_failures"] == 3
        assert shown["retry_after"] >= 1
        assert (await circuit(client, "benepia"))["state"] == "closed"


async def test_two_failures_do_not_open_it(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[failed(), failed(), bob_ok(), failed()])
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(4):
            await client.get(BOB_GAFAPAY)
        shown = await circuit(client, "gafapay")
    # A success in between resets the count.
    assert shown["state"] == "closed"
    assert shown["consecutive_failures"] == 1
    assert gafa.call_count == 4


async def test_probe_success_closes_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[failed()] * 3 + [bob_ok()] * 3)
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(3):
            await client.get(BOB_GAFAPAY)
        assert_fails_fast(await client.get(BOB_GAFAPAY), "gafapay")
        await asyncio.sleep(OPEN_FOR + 0.05)
        probe = await client.get(BOB_GAFAPAY)
        assert probe.status_code == 200, probe.text
        assert gafa.call_count == 4
        assert await circuit(client, "gafapay") == {
            "state": "closed",
            "consecutive_failures": 0,
            "retry_after": None,
        }
        assert (await client.get(BOB_GAFAPAY)).status_code == 200
    assert gafa.call_count == 5


async def test_failed_probe_reopens_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=failed())
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(3):
            await client.get(BOB_GAFAPAY)
        await asyncio.sleep(OPEN_FOR + 0.05)
        probe = await client.get(BOB_GAFAPAY)
        assert probe.status_code == 502, probe.text
        assert probe.json()["code"] == "upstream_error"
        assert gafa.call_count == 4
        assert (await circuit(client, "gafapay"))["state"] == "open"
        assert_fails_fast(await client.get(BOB_GAFAPAY), "gafapay")
    assert gafa.call_count == 4


async def test_half_open_lets_one_probe_through(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    probing = asyncio.Event()
    release = asyncio.Event()
    replies = iter([failed(), failed(), failed()])

    async def upstream_gafapay(request: httpx.Request) -> httpx.Response:
        reply = next(replies, None)
        if reply is not None:
            return reply
        probing.set()
        await asyncio.wait_for(release.wait(), 5)
        return bob_ok()

    _, _, gafa = mock_upstreams(upstream, gafapay=upstream_gafapay)
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(3):
            await client.get(BOB_GAFAPAY)
        await asyncio.sleep(OPEN_FOR + 0.05)
        probe = asyncio.create_task(client.get(BOB_GAFAPAY))
        await asyncio.wait_for(probing.wait(), 2)
        assert (await circuit(client, "gafapay"))["state"] == "half_open"
        # While the probe is out, every other call fails fast (another user: the same one would
        # join the probe's single flight).
        assert_fails_fast(await client.get("/users/alice/points/gafapay"), "gafapay")
        release.set()
        assert (await asyncio.wait_for(probe, 2)).status_code == 200
        assert (await circuit(client, "gafapay"))["state"] == "closed"
    assert gafa.call_count == 4


async def test_rejections_never_open_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    rejected = httpx.Response(200, json={"success": 0, "error": ["no such user"], "data": None})
    _, _, gafa = mock_upstreams(upstream, gafapay=rejected)
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(6):
            r = await client.get(BOB_GAFAPAY)
            assert r.status_code == 422, r.text
            assert r.json()["code"] == "provider_rejected"
        shown = await circuit(client, "gafapay")
    assert shown["state"] == "closed"
    assert shown["consecutive_failures"] == 0
    assert gafa.call_count == 6


async def test_benepia_login_refusals_never_open_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    refused = httpx.Response(200, json={"code": 1, "message": "login failed", "response": None})
    _, point, _ = mock_upstreams(upstream, benepia=refused)
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(5):
            assert (await client.get(CAROL_BENEPIA)).status_code == 422
        assert (await circuit(client, "benepia"))["state"] == "closed"
    assert point.call_count == 5


async def test_a_rejection_resets_the_failure_count(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    rejected = httpx.Response(200, json={"success": 0, "error": ["no"], "data": None})
    mock_upstreams(upstream, gafapay=[failed(), failed(), rejected, failed(), failed()])
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(5):
            await client.get(BOB_GAFAPAY)
        shown = await circuit(client, "gafapay")
    # The provider answered in between: it is healthy, so the run of failures starts again.
    assert shown["state"] == "closed"
    assert shown["consecutive_failures"] == 2


async def test_auth_failures_count_as_failures(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=httpx.Response(401, text="expired"))
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(3):
            assert (await client.get(BOB_GAFAPAY)).status_code == 502
        assert_fails_fast(await client.get(BOB_GAFAPAY), "gafapay")
    assert gafa.call_count == 3


async def test_failure_rate_opens_the_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    rate_rule = {
        "breaker_consecutive_failures": 1_000_000,
        "breaker_failure_rate": 0.5,
        "breaker_min_calls": 4,
        "breaker_window": 30,
    }
    _, _, gafa = mock_upstreams(upstream, gafapay=[bob_ok(), failed(), bob_ok(), failed()])
    async with serve_in_process(gateway_app(settings(resilience=rate_rule))) as client:
        for _ in range(3):
            await client.get(BOB_GAFAPAY)
        # 1 failure in 3 calls: below min_calls, closed.
        assert (await circuit(client, "gafapay"))["state"] == "closed"
        await client.get(BOB_GAFAPAY)
        # 2 failures in 4 calls: 50 % >= 50 %, open.
        assert (await circuit(client, "gafapay"))["state"] == "open"
        assert_fails_fast(await client.get(BOB_GAFAPAY), "gafapay")
    assert gafa.call_count == 4


async def test_failure_rate_needs_min_calls(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    rate_rule = {
        "breaker_consecutive_failures": 1_000_000,
        "breaker_failure_rate": 0.5,
        "breaker_min_calls": 10,
    }
    _, _, gafa = mock_upstreams(upstream, gafapay=[failed(), bob_ok()] * 4)
    async with serve_in_process(gateway_app(settings(resilience=rate_rule))) as client:
        for _ in range(8):
            await client.get(BOB_GAFAPAY)
        assert (await circuit(client, "gafapay"))["state"] == "closed"
    assert gafa.call_count == 8


async def test_timeouts_count_as_failures(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def hanging(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return bob_ok()

    mock_upstreams(upstream, gafapay=hanging)
    # The provider's own timeout (not the client's Request-Timeout) is what expires here.
    async with serve_in_process(gateway_app(settings(gafapay_timeout=0.2))) as client:
        for _ in range(3):
            r = await asyncio.wait_for(client.get(BOB_GAFAPAY), 1.5)
            assert r.status_code == 504, r.text
            assert r.json()["code"] == "upstream_timeout"
        shown = await circuit(client, "gafapay")
    assert shown["consecutive_failures"] == 3
    assert shown["state"] == "open"


async def test_a_clients_short_deadline_does_not_count_against_the_provider(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def slowish(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return bob_ok()

    mock_upstreams(upstream, gafapay=slowish)
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(4):
            r = await asyncio.wait_for(
                client.get(BOB_GAFAPAY, headers={"request-timeout": "0.1"}), 1.5
            )
            assert r.status_code == 504, r.text
        shown = await circuit(client, "gafapay")
    # GafaPay (3 s timeout) was never given its time: nothing says it is unwell.
    assert shown["state"] == "closed"
    assert shown["consecutive_failures"] == 0


async def test_open_benepia_leaves_gafapay_answering(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point, gafa = mock_upstreams(upstream, benepia=failed())
    async with serve_in_process(gateway_app(settings())) as client:
        for _ in range(3):
            assert (await client.get(CAROL_BENEPIA)).status_code == 502
        assert point.call_count == 3
        r = await client.get("/users/alice/points")
    assert r.status_code == 200, r.text
    assert r.headers["x-points-complete"] == "false"
    body = r.json()
    assert body["complete"] is False
    benepia, gafapay = body["balances"]
    assert benepia["status"] == "error"
    assert benepia["error"]["code"] == "provider_unavailable"
    assert benepia["error"]["status"] == 503
    assert benepia["error"]["retry_after"] >= 1
    assert gafapay["status"] == "ok"
    assert gafapay["points"] == "250.0"
    assert point.call_count == 3
    assert gafa.call_count == 1


# --- the CircuitBreaker class, on a fake clock -----------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    values: dict[str, Any] = {
        "consecutive_failures": 3,
        "failure_rate": 0.5,
        "window": 30.0,
        "min_calls": 1000,
        "open_for": 10.0,
        **policy,
    }
    return CircuitBreaker("gafapay", BreakerPolicy(**values), clock=clock)


def fail_n(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        b.before_call()
        b.record_failure()


def test_unit_opens_after_consecutive_failures() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 2)
    assert (b.snapshot().state, b.state) == ("closed", "closed")
    fail_n(b, 1)
    assert (b.snapshot().state, b.state) == ("open", "open")
    with pytest.raises(ProviderUnavailable) as caught:
        b.before_call()
    assert caught.value.retry_after == 10
    assert caught.value.provider == "gafapay"
    assert caught.value.status == 503


def test_unit_retry_after_counts_down_and_is_at_least_one() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 3)
    clock.now += 6.5
    assert b.snapshot().retry_after == 4
    with pytest.raises(ProviderUnavailable) as caught:
        b.before_call()
    assert caught.value.retry_after == 4
    clock.now += 3.4
    assert b.snapshot().retry_after == 1
    clock.now += 5.0  # past open_for, and no call has come to move it to half-open yet
    assert b.snapshot().state == "open"
    assert b.snapshot().retry_after == 1


def test_unit_half_open_allows_a_single_probe() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 3)
    clock.now += 10.0
    b.before_call()  # the probe
    assert (b.snapshot().state, b.state) == ("half_open", "half_open")
    with pytest.raises(ProviderUnavailable) as caught:
        b.before_call()
    assert caught.value.retry_after == 1


def test_unit_probe_success_closes() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 3)
    clock.now += 10.0
    b.before_call()
    b.record_success()
    assert b.snapshot() == type(b.snapshot())("closed", 0, None)
    b.before_call()
    b.before_call()


def test_unit_probe_failure_reopens_for_a_full_period() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 3)
    clock.now += 12.0
    b.before_call()
    b.record_failure()
    assert b.snapshot().state == "open"
    assert b.snapshot().retry_after == 10
    clock.now += 9.9
    with pytest.raises(ProviderUnavailable):
        b.before_call()
    clock.now += 0.1
    b.before_call()
    assert b.snapshot().state == "half_open"


def test_unit_released_probe_allows_another() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail_n(b, 3)
    clock.now += 10.0
    b.before_call()
    b.release_probe()  # e.g. the caller went away: no verdict
    b.before_call()
    b.record_success()
    assert b.snapshot().state == "closed"


def test_unit_success_resets_consecutive_count() -> None:
    b = breaker(FakeClock())
    fail_n(b, 2)
    b.before_call()
    b.record_success()
    fail_n(b, 2)
    assert b.snapshot().state == "closed"
    assert b.snapshot().consecutive_failures == 2


def test_unit_failure_rate_over_window_with_min_calls() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1000, min_calls=4, failure_rate=0.5)
    for ok in (True, False, True):
        b.before_call()
        if ok:
            b.record_success()
        else:
            b.record_failure()
    assert b.snapshot().state == "closed"
    fail_n(b, 1)
    assert b.snapshot().state == "open"


def test_unit_old_outcomes_leave_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1000, min_calls=4, failure_rate=0.5, window=30.0)
    fail_n(b, 3)
    clock.now += 31.0
    fail_n(b, 1)
    # The three old failures are outside the window: one call is below min_calls.
    assert b.snapshot().state == "closed"
    fail_n(b, 3)
    assert b.snapshot().state == "open"


def test_unit_low_failure_rate_stays_closed() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1000, min_calls=4, failure_rate=0.5)
    for ok in (True, True, False, True, True, False, True):
        b.before_call()
        if ok:
            b.record_success()
        else:
            b.record_failure()
    assert b.snapshot().state == "closed"


@pytest.mark.parametrize(("age", "state"), [(30.0, "open"), (30.001, "closed")])
def test_unit_an_outcome_exactly_one_window_old_still_counts(age: float, state: str) -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1000, min_calls=2, failure_rate=1.0, window=30.0)
    fail_n(b, 1)
    clock.now += age
    fail_n(b, 1)
    assert b.snapshot().state == state

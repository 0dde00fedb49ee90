"""Retries: only transient failures, few and jittered, inside the deadline, within a budget."""

from __future__ import annotations

import asyncio
import math
import random
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

from app.errors import (
    ProviderRejected,
    ProviderUnavailable,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.resilience import retry as retry_module
from app.resilience.retry import RetryPolicy, call_with_retries, is_retryable
from app.resilience.retry_budget import RetryBudget
from app.settings import Settings
from tests.conftest import (
    PROBLEM,
    AppFactory,
    benepia_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)
from tests.resilience.conftest import bob_ok, gafapay_timeout_providers

BOB_GAFAPAY = "/users/bob/points/gafapay"
CAROL_BENEPIA = "/users/carol/points/benepia"
RESERVE = 3.0
RATIO = 0.2

# Retries on, with short waits; the breaker effectively off so it never hides a retry.
RETRYING: dict[str, object] = {
    "retry_attempts": 2,
    "retry_wait_initial": 0.01,
    "retry_wait_max": 0.05,
    "breaker_consecutive_failures": 1_000_000,
    "breaker_min_calls": 1_000_000,
}


def settings(
    *, gafapay_timeout: float | None = None, resilience: dict[str, object] | None = None
) -> Settings:
    """Test settings with retries on (and GafaPay's timeout replaced if given)."""
    policy = {**RETRYING, **(resilience or {})}
    if gafapay_timeout is None:
        return make_settings(resilience=policy)
    return make_settings(resilience=policy, providers=gafapay_timeout_providers(gafapay_timeout))


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


# --- transient failures are retried ----------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_transient_status_then_ok_is_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter, status: int
) -> None:
    _, _, gafa = mock_upstreams(
        upstream, gafapay=[httpx.Response(status, text="try later"), bob_ok()]
    )
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(BOB_GAFAPAY)
    assert r.status_code == 200, r.text
    assert r.json()["points"] == "7"
    assert gafa.call_count == 2


async def test_connect_error_then_ok_is_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[httpx.ConnectError("refused"), bob_ok()])
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(BOB_GAFAPAY)
    assert r.status_code == 200, r.text
    assert gafa.call_count == 2


async def test_benepia_503_then_ok_is_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point, _ = mock_upstreams(upstream, benepia=[httpx.Response(503), benepia_ok(42)])
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(CAROL_BENEPIA)
    assert r.status_code == 200, r.text
    assert r.json()["points"] == "42"
    assert point.call_count == 2


@pytest.mark.parametrize("attempts", [1, 2, 3])
async def test_attempts_are_capped_by_retry_attempts(
    gateway_app: AppFactory, upstream: respx.MockRouter, attempts: int
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=httpx.Response(503, text="down"))
    config = settings(resilience={"retry_attempts": attempts})
    async with serve_in_process(gateway_app(config)) as client:
        r = await client.get(BOB_GAFAPAY)
    body = problem(r, 502, "upstream_error")
    assert body["upstream_status"] == 503
    assert gafa.call_count == attempts


async def test_default_policy_makes_at_most_one_retry(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=httpx.Response(503, text="down"))
    # resilience={} is every default: 2 attempts, the real breaker, default waits.
    async with serve_in_process(gateway_app(make_settings(resilience={}))) as client:
        r = await client.get(BOB_GAFAPAY)
    problem(r, 502, "upstream_error")
    assert gafa.call_count == 2


async def test_retry_waits_at_least_the_initial_backoff(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    starts: list[float] = []

    async def flaky(request: httpx.Request) -> httpx.Response:
        starts.append(time.monotonic())
        return httpx.Response(503) if len(starts) == 1 else bob_ok()

    mock_upstreams(upstream, gafapay=flaky)
    config = settings(resilience={"retry_wait_initial": 0.2, "retry_wait_max": 0.5})
    async with serve_in_process(gateway_app(config)) as client:
        r = await client.get(BOB_GAFAPAY)
    assert r.status_code == 200, r.text
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.2


# --- failures that are answers are never retried ---------------------------------------------


async def test_plain_500_is_not_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    # The issue lists 502/503/504 only: a 500 is an answer, not an outage.
    _, _, gafa = mock_upstreams(upstream, gafapay=httpx.Response(500, text="boom"))
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(BOB_GAFAPAY)
    body = problem(r, 502, "upstream_error")
    assert body["upstream_status"] == 500
    assert gafa.call_count == 1


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        pytest.param(
            httpx.Response(200, json={"success": 0, "error": ["no such user"], "data": None}),
            422,
            "provider_rejected",
            id="rejected-success-0",
        ),
        pytest.param(
            httpx.Response(400, json={"success": 0, "error": ["bad currency"], "data": None}),
            422,
            "provider_rejected",
            id="rejected-400",
        ),
        pytest.param(httpx.Response(401, text="expired"), 502, "upstream_auth_failed", id="401"),
        pytest.param(
            httpx.Response(200, text="<html>not json</html>"),
            502,
            "upstream_invalid_response",
            id="invalid-json",
        ),
    ],
)
async def test_gafapay_non_transient_failure_is_not_retried(
    gateway_app: AppFactory,
    upstream: respx.MockRouter,
    reply: httpx.Response,
    status: int,
    code: str,
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=reply)
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(BOB_GAFAPAY)
    problem(r, status, code)
    assert gafa.call_count == 1


async def test_benepia_login_refusal_is_not_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    refused = httpx.Response(200, json={"code": 1, "message": "login failed", "response": None})
    _, point, _ = mock_upstreams(upstream, benepia=refused)
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(CAROL_BENEPIA)
    body = problem(r, 422, "provider_rejected")
    assert body["upstream_code"] == "1"
    # A repeated refused login could lock the user's Benepia account.
    assert point.call_count == 1


async def test_benepia_token_refusal_is_not_retried(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    tokens, point, _ = mock_upstreams(upstream)
    tokens.mock(return_value=httpx.Response(401, json={"code": -1, "message": "bad key"}))
    async with serve_in_process(gateway_app(settings())) as client:
        r = await client.get(CAROL_BENEPIA)
    problem(r, 502, "upstream_auth_failed")
    assert tokens.call_count == 1
    assert point.call_count == 0


# --- 429 and Retry-After ---------------------------------------------------------------------


async def test_429_retry_after_is_honoured(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    starts: list[float] = []

    async def limited_once(request: httpx.Request) -> httpx.Response:
        starts.append(time.monotonic())
        if len(starts) == 1:
            return httpx.Response(429, headers={"retry-after": "1"}, text="slow down")
        return bob_ok()

    mock_upstreams(upstream, gafapay=limited_once)
    async with serve_in_process(gateway_app(settings(gafapay_timeout=4.0))) as client:
        r = await asyncio.wait_for(client.get(BOB_GAFAPAY), 4)
    assert r.status_code == 200, r.text
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 1.0


async def test_429_retry_after_beyond_the_deadline_is_not_waited_for(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(
        upstream, gafapay=httpx.Response(429, headers={"retry-after": "30"}, text="slow down")
    )
    async with serve_in_process(gateway_app(settings(gafapay_timeout=4.0))) as client:
        r = await asyncio.wait_for(client.get(BOB_GAFAPAY), 2)
    body = problem(r, 503, "upstream_rate_limited")
    assert r.headers["retry-after"] == "30"
    assert body["retry_after"] == 30
    assert gafa.call_count == 1


# --- the retry budget ------------------------------------------------------------------------


async def test_sustained_outage_is_not_multiplied(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    requests = 100
    _, _, gafa = mock_upstreams(upstream, gafapay=httpx.Response(503, text="down"))
    config = settings(resilience={"retry_wait_initial": 0.001, "retry_wait_max": 0.002})
    async with serve_in_process(gateway_app(config)) as client:
        for _ in range(requests):
            r = await client.get(BOB_GAFAPAY)
            assert r.status_code == 502, r.text
    # Each request earns 0.2 of a retry; 3 in reserve: never more than 3 + 0.2 * N retries.
    assert gafa.call_count <= requests + RESERVE + RATIO * requests
    assert gafa.call_count > requests


async def test_retry_budget_is_per_provider(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point, gafa = mock_upstreams(upstream, gafapay=httpx.Response(503, text="down"))
    # Ratio 0: each provider has its reserve of 3 retries and earns no more.
    config = settings(
        resilience={"retry_wait_initial": 0.001, "retry_wait_max": 0.002, "retry_budget_ratio": 0}
    )
    async with serve_in_process(gateway_app(config)) as client:
        for _ in range(5):
            await client.get(BOB_GAFAPAY)
        assert gafa.call_count == 5 + 3
        # GafaPay's budget is spent: its next failure is not retried...
        before = gafa.call_count
        await client.get(BOB_GAFAPAY)
        assert gafa.call_count == before + 1
        # ...while Benepia's own budget is untouched.
        point.mock(side_effect=[httpx.Response(503), benepia_ok(5)])
        r = await client.get(CAROL_BENEPIA)
    assert r.status_code == 200, r.text
    assert point.call_count == 2


def test_budget_reserve_is_spent_first() -> None:
    budget = RetryBudget(ratio=RATIO, reserve=RESERVE)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_earns_one_retry_per_five_calls() -> None:
    budget = RetryBudget(ratio=0.2, reserve=0)
    for _ in range(4):
        budget.record_call()
        assert not budget.try_spend()
    budget.record_call()
    budget.record_call()  # a sixth, so float rounding of 5 * 0.2 cannot matter
    assert budget.try_spend()
    assert not budget.try_spend()


def test_budget_does_not_bank_beyond_its_reserve() -> None:
    budget = RetryBudget(ratio=0.2, reserve=3)
    for _ in range(1000):
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(10)) == 3


def test_budget_without_a_reserve_banks_one_retry_at_most() -> None:
    budget = RetryBudget(ratio=0.5, reserve=0)
    for _ in range(1000):
        budget.record_call()
    assert [budget.try_spend() for _ in range(3)] == [True, False, False]


def test_budget_default_reserve_is_three_retries() -> None:
    budget = RetryBudget(ratio=0.0)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_with_zero_ratio_only_has_its_reserve() -> None:
    budget = RetryBudget(ratio=0.0, reserve=3)
    spent = 0
    for _ in range(100):
        budget.record_call()
        spent += budget.try_spend()
    assert spent == 3


@pytest.mark.parametrize("calls", [0, 1, 4, 10, 100, 1000])
def test_budget_bound_under_sustained_outage(calls: int) -> None:
    budget = RetryBudget(ratio=RATIO, reserve=RESERVE)
    retries = 0
    for _ in range(calls):
        budget.record_call()
        retries += budget.try_spend()  # every call fails and wants its retry
    assert retries <= RESERVE + RATIO * calls
    # ...and the budget is not stingier than that by more than one retry.
    assert retries >= min(calls, math.floor(RESERVE + RATIO * calls) - 1)


# --- what counts as transient ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (UpstreamUnreachable("x"), True),
        (UpstreamRateLimited("x", retry_after=1), True),
        (UpstreamError("x", upstream_status=502), True),
        (UpstreamError("x", upstream_status=503), True),
        (UpstreamError("x", upstream_status=504), True),
        (UpstreamError("x", upstream_status=500), False),
        (UpstreamError("x", upstream_status=None), False),
        (UpstreamTimeout("x"), False),
        (UpstreamAuthFailed("x", upstream_status=401), False),
        (UpstreamInvalidResponse("x", upstream_status=200), False),
        (ProviderRejected("x", upstream_status=200), False),
        (ProviderUnavailable("x", retry_after=1), False),
    ],
    ids=repr,
)
def test_is_retryable(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


# --- call_with_retries on a fake clock: the deadline margin and the first wait's cap ------------

NOW = 0.0  # so `deadline_at - clock()` is the remaining time exactly, to the last bit
# A retry needs more than 50 ms left for its attempt (and for any Retry-After wait before it).
MARGIN = 0.05


class Flaky:
    """Fails once with `error`, then answers "ok"; counts the attempts."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    async def __call__(self) -> str:
        self.attempts += 1
        if self.attempts == 1:
            raise self.error
        return "ok"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits call_with_retries asks for before its retry, recorded instead of slept."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(retry_module, "asyncio", SimpleNamespace(sleep=record))
    return asked


async def retried(call: Flaky, *, policy: RetryPolicy, remaining: float) -> str:
    return await call_with_retries(
        call,
        policy=policy,
        budget=RetryBudget(ratio=0.2),
        deadline_at=NOW + remaining,
        clock=lambda: NOW,
    )


@pytest.mark.parametrize(
    ("retry_after", "remaining", "retry"),
    [
        pytest.param(None, MARGIN + 0.001, True, id="just-above-the-margin"),
        pytest.param(None, MARGIN, False, id="at-the-margin"),
        pytest.param(None, MARGIN - 0.001, False, id="just-below-the-margin"),
        pytest.param(2, 2 + MARGIN + 0.001, True, id="retry-after-just-fits"),
        pytest.param(2, 2 + MARGIN, False, id="retry-after-at-the-margin"),
        pytest.param(2, 2 + MARGIN - 0.001, False, id="retry-after-just-overruns"),
    ],
)
async def test_a_retry_needs_more_than_the_margin_left_before_the_deadline(
    waits: list[float], retry_after: int | None, remaining: float, retry: bool
) -> None:
    # Kills: the deadline check's MIN_ATTEMPT_SECONDS margin dropped, changed, or `>=` made `>`.
    error: Exception = (
        UpstreamUnreachable("refused")
        if retry_after is None
        else UpstreamRateLimited("slow down", retry_after=retry_after)
    )
    call = Flaky(error)
    policy = RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.001)
    if retry:
        assert await retried(call, policy=policy, remaining=remaining) == "ok"
        assert call.attempts == 2
        assert len(waits) == 1
    else:
        with pytest.raises(type(error)):
            await retried(call, policy=policy, remaining=remaining)
        assert call.attempts == 1, "no retry the deadline cannot fit"
        assert waits == []


async def test_the_first_wait_is_capped_at_wait_max(waits: list[float]) -> None:
    # Kills: _first_wait's min(policy.wait_max, ...) cap dropped (an initial wait past the max).
    call = Flaky(UpstreamUnreachable("refused"))
    policy = RetryPolicy(attempts=2, wait_initial=2.0, wait_max=0.5)
    assert await retried(call, policy=policy, remaining=60.0) == "ok"
    assert waits == [0.5]


async def test_the_first_wait_is_the_initial_wait_plus_up_to_one_jitter(
    waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kills: the jitter's range moved off [0, wait_initial] (stamina's own: wait_jitter).
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    call = Flaky(UpstreamUnreachable("refused"))
    policy = RetryPolicy(attempts=2, wait_initial=0.05, wait_max=10.0)
    assert await retried(call, policy=policy, remaining=60.0) == "ok"
    assert drawn == [(0, 0.05)]
    assert waits == [0.1]


class Failing(Flaky):
    """Fails every time; counts the attempts."""

    async def __call__(self) -> str:
        self.attempts += 1
        raise self.error


@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
async def test_exactly_the_configured_attempts_are_made(waits: list[float], attempts: int) -> None:
    # Kills: the attempt count off by one, on the bare first attempt or in stamina's loop.
    call = Failing(UpstreamUnreachable("refused"))
    policy = RetryPolicy(attempts=attempts, wait_initial=0.001, wait_max=0.001)
    budget = RetryBudget(ratio=0.2, reserve=10)
    with pytest.raises(UpstreamUnreachable):
        await call_with_retries(
            call, policy=policy, budget=budget, deadline_at=NOW + 60.0, clock=lambda: NOW
        )
    assert call.attempts == attempts
    assert len(waits) == min(attempts - 1, 1)  # the first wait is ours; stamina sleeps the rest
    # One retry spent per retry made: the last failure must not spend one it will not use.
    assert sum(budget.try_spend() for _ in range(20)) == 10 - (attempts - 1)

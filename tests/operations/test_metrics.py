"""/metrics: per-app Prometheus series for requests, upstream calls, cache, breakers, refusals."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from prometheus_client import generate_latest

from app.main import create_app
from app.observability.metrics import GatewayMetrics
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_URL,
    GAFAPAY_URL,
    PROBLEM,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    make_store,
    serve_in_process,
    token_ok,
)
from tests.operations.conftest import parse_metrics, sample, scrape

BENEPIA = "/users/{user_id}/points/benepia"
GAFAPAY = "/users/{user_id}/points/gafapay"
METRICS_TOKEN = "metrics-token-0123456789"
SHED = "points_load_shed_rejections_total"


async def test_scrape_after_traffic_has_upstream_cache_and_breaker_series(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    gafapay = upstream.get(GAFAPAY_URL)
    gafapay.mock(return_value=gafapay_ok())
    settings = make_settings(
        cache={"ttl": 60, "stale_if_error": 0},
        resilience={
            "retry_attempts": 1,
            "breaker_consecutive_failures": 1,
            "breaker_min_calls": 1_000_000,
            "breaker_open_seconds": 60,
        },
    )
    async with serve_in_process(gateway_app(settings)) as client:
        ok_benepia = await client.get("/users/alice/points/benepia")
        ok_gafapay = await client.get("/users/alice/points/gafapay")
        hit = await client.get("/users/alice/points/benepia")
        gafapay.mock(return_value=httpx.Response(500, json={"success": 0, "error": ["boom"]}))
        failed = await client.get("/users/bob/points/gafapay")  # nothing cached for bob
        short_circuited = await client.get("/users/bob/points/gafapay")
        samples = await scrape(client)

    assert [r.status_code for r in (ok_benepia, ok_gafapay, hit)] == [200, 200, 200]
    assert hit.json()["cached"] is True
    assert failed.status_code == 502, failed.text
    assert failed.json()["code"] == "upstream_error"
    assert short_circuited.status_code == 503, short_circuited.text
    assert short_circuited.json()["code"] == "provider_unavailable"

    calls = "points_upstream_calls_total"
    assert sample(samples, calls, provider="benepia", outcome="ok") == 1
    assert sample(samples, calls, provider="gafapay", outcome="ok") == 1
    assert sample(samples, calls, provider="gafapay", outcome="upstream_error") == 1
    assert sample(samples, calls, provider="gafapay", outcome="provider_unavailable") is None
    duration = "points_upstream_call_duration_seconds_count"
    assert sample(samples, duration, provider="gafapay") == 2
    skipped = "points_upstream_skipped_total"
    assert sample(samples, skipped, provider="gafapay", reason="circuit_open") == 1

    assert sample(samples, "points_cache_hits_total", provider="benepia") == 1
    assert sample(samples, "points_cache_hits_total", provider="gafapay") is None
    assert sample(samples, "points_cache_misses_total", provider="benepia") == 1
    assert sample(samples, "points_cache_misses_total", provider="gafapay") == 3

    assert sample(samples, "points_circuit_breaker_state", provider="gafapay") == 2
    assert sample(samples, "points_circuit_breaker_state", provider="benepia") == 0
    transitions = "points_circuit_breaker_transitions_total"
    assert sample(samples, transitions, provider="gafapay", state="open") == 1
    assert (
        sample(samples, "points_iamport_token_refreshes_total", provider="benepia", outcome="ok")
        == 1
    )

    requests = "points_http_requests_total"
    assert sample(samples, requests, method="GET", route=BENEPIA, status="200") == 2
    assert sample(samples, requests, method="GET", route=GAFAPAY, status="200") == 1
    assert sample(samples, requests, method="GET", route=GAFAPAY, status="502") == 1
    assert sample(samples, requests, method="GET", route=GAFAPAY, status="503") == 1
    latency = "points_http_request_duration_seconds_count"
    assert sample(samples, latency, method="GET", route=BENEPIA, status="200") == 2
    assert not any("alice" in repr(labels) for _, labels in samples), "no raw path in labels"


async def test_breaker_half_open_and_closing_are_transitions(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    gafapay = upstream.get(GAFAPAY_URL)
    gafapay.mock(return_value=httpx.Response(500))
    settings = make_settings(
        resilience={
            "retry_attempts": 1,
            "breaker_consecutive_failures": 1,
            "breaker_min_calls": 1_000_000,
            "breaker_open_seconds": 0.05,
        },
    )
    async with serve_in_process(gateway_app(settings)) as client:
        assert (await client.get("/users/alice/points/gafapay")).status_code == 502
        await asyncio.sleep(0.1)
        gafapay.mock(return_value=gafapay_ok())
        assert (await client.get("/users/alice/points/gafapay")).status_code == 200
        samples = await scrape(client)

    transitions = "points_circuit_breaker_transitions_total"
    for state in ("open", "half_open", "closed"):
        assert sample(samples, transitions, provider="gafapay", state=state) == 1, state
    assert sample(samples, "points_circuit_breaker_state", provider="gafapay") == 0


async def test_rate_limit_and_load_shedding_refusals_are_counted(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await asyncio.wait_for(release.wait(), 5)
        return gafapay_ok(user_id=ALICE_GAFAPAY)

    upstream.get(GAFAPAY_URL).mock(side_effect=held)
    settings = make_settings(
        limits={"rate": "2/minute"}, resilience={"max_in_flight_requests": 1, "retry_attempts": 1}
    )
    async with serve_in_process(gateway_app(settings)) as client:
        slow = asyncio.create_task(client.get("/users/alice/points/gafapay"))
        await asyncio.wait_for(arrived.wait(), 5)
        shed = await client.get("/providers")
        release.set()
        assert (await slow).status_code == 200
        limited = [await client.get("/users/alice/points/gafapay") for _ in range(2)]
        samples = await scrape(client)

    assert shed.status_code == 503
    assert shed.json()["code"] == "overloaded"
    assert [r.status_code for r in limited] == [200, 429]
    assert sample(samples, SHED) == 1
    assert sample(samples, "points_rate_limit_rejections_total") == 1
    requests = "points_http_requests_total"
    assert sample(samples, requests, method="GET", route="unmatched", status="503") == 1
    assert sample(samples, requests, method="GET", route=GAFAPAY, status="429") == 1


async def test_metrics_token_guards_the_scrape(gateway_app: AppFactory) -> None:
    settings = make_settings(metrics_token=METRICS_TOKEN)
    async with serve_in_process(gateway_app(settings)) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer not-the-token!"})
        basic = await client.get("/metrics", headers={"authorization": f"Basic {METRICS_TOKEN}"})
        samples = await scrape(client, authorization=f"Bearer {METRICS_TOKEN}")
        schema = (await client.get("/openapi.json")).json()

    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert METRICS_TOKEN not in refused.text
    assert sample(samples, "points_gateway_info", version="0.1.0") == 1
    assert "/metrics" not in schema["paths"]


async def test_metrics_are_public_without_a_token_and_never_shed(
    gateway_app: AppFactory,
) -> None:
    async with serve_in_process(gateway_app()) as client:
        samples = await scrape(client)
    assert sample(samples, "points_http_requests_in_flight") == 1  # the scrape itself


def test_each_app_has_its_own_registry() -> None:
    first, second = (create_app(make_settings(), store=make_store()) for _ in range(2))
    ours, theirs = first.state.metrics, second.state.metrics
    assert isinstance(ours, GatewayMetrics)
    assert isinstance(theirs, GatewayMetrics)
    assert ours.registry is not theirs.registry
    ours.load_shed.inc()
    assert sample(parse_metrics(generate_latest(theirs.registry).decode()), SHED) == 0
    assert sample(parse_metrics(generate_latest(ours.registry).decode()), SHED) == 1


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        make_settings(metrics_token="short")

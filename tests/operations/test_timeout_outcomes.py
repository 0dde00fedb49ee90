"""A hang stopped by a timeout is logged and counted as `upstream_timeout`, as the client sees it:
an alert on timeouts must see hangs. Only a caller that went away is `cancelled`."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from app.observability import events
from tests.conftest import (
    BENEPIA_URL,
    GAFAPAY_URL,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    make_settings,
    serve_in_process,
    token_ok,
)
from tests.operations.conftest import CapturedLogs, sample, scrape
from tests.resilience.conftest import gafapay_timeout_providers

GUARD = 3.0  # a hang guard, not a timing assertion
UPSTREAM_CALLS = "points_upstream_calls_total"


async def hang(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    raise AssertionError("the gateway waited out a 30 s hang")


def mock_gafapay_hanging(upstream: respx.MockRouter) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    upstream.get(GAFAPAY_URL).mock(side_effect=hang)


@pytest.mark.parametrize(
    ("gafapay_timeout", "request_timeout"),
    [(0.2, None), (5.0, "0.2")],
    ids=["the provider's own timeout", "the request's deadline"],
)
async def test_a_hang_cut_by_a_timeout_is_upstream_timeout_in_logs_and_metrics(
    gateway_app: AppFactory,
    upstream: respx.MockRouter,
    json_logs: CapturedLogs,
    gafapay_timeout: float,
    request_timeout: str | None,
) -> None:
    mock_gafapay_hanging(upstream)
    settings = make_settings(
        providers=gafapay_timeout_providers(gafapay_timeout),
        request_deadline=5.0,
        resilience={"retry_attempts": 1},
    )
    headers = {"request-timeout": request_timeout} if request_timeout else {}
    async with serve_in_process(gateway_app(settings)) as client:
        response = await asyncio.wait_for(client.get("/users/alice/points", headers=headers), GUARD)
        samples = await scrape(client)

    assert response.status_code == 200, response.text
    gafapay = response.json()["balances"][1]
    assert gafapay["error"]["code"] == "upstream_timeout"

    (call,) = json_logs.events("upstream_call")  # benepia's went well: on the request's line
    assert (call["provider"], call["outcome"]) == ("gafapay", "upstream_timeout")
    assert call["level"] == "warning"
    (line,) = json_logs.events("request")
    assert line["providers"]["gafapay"]["outcome"] == "upstream_timeout"
    assert line["providers"]["benepia"]["outcome"] == "ok"

    timeouts = sample(samples, UPSTREAM_CALLS, provider="gafapay", outcome="upstream_timeout")
    assert timeouts == 1
    assert sample(samples, UPSTREAM_CALLS, provider="gafapay", outcome="cancelled") is None


async def test_a_call_cancelled_before_its_timeout_is_cancelled(json_logs: CapturedLogs) -> None:
    """A caller that goes away (a client disconnect, a sibling's failure) is not a timeout."""

    async def attempt() -> None:
        with events.upstream_attempt("gafapay", 1, "miss"):
            await asyncio.sleep(30)

    token = events.call_deadline.set(asyncio.get_running_loop().time() + 30)
    try:
        task = asyncio.create_task(attempt())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        events.call_deadline.reset(token)

    (call,) = json_logs.events("upstream_call")
    assert call["outcome"] == "cancelled"

"""IamportTokenManager: caching, the refresh margin, skew immunity, single-flight, failures."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest
import respx
from pydantic import SecretStr

from app.errors import UpstreamAuthFailed, UpstreamError, UpstreamInvalidResponse
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import UpstreamConfig
from app.providers import CallContext
from app.providers.benepia import BenepiaAccount, BenepiaProvider, BenepiaSettings
from app.providers.iamport_token import IamportTokenManager
from tests.conftest import (
    BENEPIA_URL,
    GAFAPAY_URL,
    IAMPORT,
    IMP_KEY,
    IMP_SECRET,
    TOKEN_URL,
    benepia_ok,
    gafapay_ok,
    token_ok,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def iamport(upstream: respx.MockRouter) -> HttpxUpstream:
    config = UpstreamConfig(
        provider="benepia", base_url=IAMPORT, timeout=4.0, connect_timeout=2.0, max_bytes=1 << 20
    )
    return HttpxUpstream(config, transport=httpx.MockTransport(upstream.async_handler))


@pytest.fixture
def manager(iamport: HttpxUpstream, clock: FakeClock) -> IamportTokenManager:
    return IamportTokenManager(
        iamport,
        imp_key=IMP_KEY,
        imp_secret=SecretStr(IMP_SECRET),
        refresh_margin=BenepiaSettings.model_fields["token_refresh_margin"].default,
        clock=clock,
    )


def slow_token(
    delay: float = 0.05, token: str = "tok-1"
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    async def effect(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay)
        return token_ok(token)

    return effect


# --- caching and the refresh margin ------------------------------------------------------------


async def test_token_is_reused(manager: IamportTokenManager, upstream: respx.MockRouter) -> None:
    route = upstream.post(TOKEN_URL).mock(return_value=token_ok("tok-1"))
    assert await manager.token() == "tok-1"
    assert await manager.token() == "tok-1"
    assert route.call_count == 1
    assert manager.refresh_count == 1


@pytest.mark.parametrize(
    ("now", "expired_at"),
    [
        pytest.param(1_700_000_000, 1_700_001_800, id="upstream-clock-agrees"),
        pytest.param(1_000, 2_800, id="upstream-clock-in-the-far-past"),
        pytest.param(4_000_000_000, 4_000_001_800, id="upstream-clock-in-the-far-future"),
    ],
)
async def test_refresh_30s_before_expiry_by_the_local_monotonic_clock(
    manager: IamportTokenManager,
    upstream: respx.MockRouter,
    clock: FakeClock,
    now: int,
    expired_at: int,
) -> None:
    route = upstream.post(TOKEN_URL).mock(
        side_effect=[
            token_ok("tok-1", ttl=expired_at - now, now=now),
            token_ok("tok-2", ttl=expired_at - now, now=now),
        ]
    )
    start = clock.now
    assert await manager.token() == "tok-1"
    clock.now = start + 1769
    assert await manager.token() == "tok-1"
    assert route.call_count == 1
    clock.now = start + 1771
    # Inside the margin the current token is still handed out; getToken runs in the background.
    assert await manager.token() == "tok-1"
    await asyncio.sleep(0.01)
    assert route.call_count == 2
    assert await manager.token() == "tok-2"
    assert await manager.token() == "tok-2"
    assert route.call_count == 2


# --- single-flight and cancellation -----------------------------------------------------------


async def test_single_flight_under_50_concurrent_callers(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TOKEN_URL).mock(side_effect=slow_token(0.05))
    tokens = await asyncio.gather(*(manager.token() for _ in range(50)))
    assert tokens == ["tok-1"] * 50
    assert route.call_count == 1


async def test_cancelled_waiter_does_not_cancel_the_shared_refresh(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    release = asyncio.Event()

    async def gated(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return token_ok("tok-1")

    route = upstream.post(TOKEN_URL).mock(side_effect=gated)
    first = asyncio.create_task(manager.token())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(manager.token())
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(second, 1.0) == "tok-1"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await manager.token() == "tok-1"
    assert route.call_count == 1


async def test_refresh_completes_even_if_its_only_waiter_gives_up(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TOKEN_URL).mock(side_effect=slow_token(0.05))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.token(), 0.01)
    await asyncio.sleep(0.1)
    assert await manager.token() == "tok-1"
    assert route.call_count == 1


# --- failures --------------------------------------------------------------------------------


async def test_failed_refresh_fails_every_waiter_and_is_not_cached(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    async def fail_slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(500, json={"code": -1, "message": "down", "response": None})

    route = upstream.post(TOKEN_URL).mock(side_effect=fail_slowly)
    results = await asyncio.gather(*(manager.token() for _ in range(5)), return_exceptions=True)
    assert len(results) == 5
    for result in results:
        assert isinstance(result, UpstreamError)
        assert result.upstream_status == 500
        assert result.provider == "benepia"
    assert route.call_count == 1

    route.mock(side_effect=None, return_value=token_ok("tok-2"))
    assert await manager.token() == "tok-2"
    assert route.call_count == 2


async def refused_token(
    manager: IamportTokenManager, upstream: respx.MockRouter, status: int, message: str
) -> UpstreamAuthFailed:
    """What token() raises when getToken answers code -1 with `status`; asked exactly once."""
    route = upstream.post(TOKEN_URL).mock(
        return_value=httpx.Response(status, json={"code": -1, "message": message, "response": None})
    )
    with pytest.raises(UpstreamAuthFailed) as caught:
        await manager.token()
    assert route.call_count == 1
    return caught.value


async def test_get_token_401_is_auth_failed_without_retry(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    error = await refused_token(manager, upstream, 401, "Unauthorized")
    assert error.upstream_status == 401
    assert error.provider == "benepia"


async def test_get_token_nonzero_code_is_auth_failed(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    error = await refused_token(manager, upstream, 200, "imp_key 가 올바르지 않습니다")
    assert error.upstream_code == "-1"
    assert error.upstream_status == 200
    assert error.detail == "imp_key 가 올바르지 않습니다"


def _token_body(**response: object) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "message": None, "response": response})


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(_token_body(now=1_000, expired_at=2_800), id="missing-access_token"),
        pytest.param(_token_body(access_token="", now=1_000, expired_at=2_800), id="empty-token"),
        pytest.param(
            _token_body(access_token="t", now="1000", expired_at=2_800), id="now-as-string"
        ),
        pytest.param(_token_body(access_token="t", now=1_000), id="missing-expired_at"),
        pytest.param(
            _token_body(access_token="t", now=1_000, expired_at=1_000), id="expired_at-equals-now"
        ),
        pytest.param(
            _token_body(access_token="t", now=1_000, expired_at=900), id="expired_at-before-now"
        ),
        pytest.param(
            _token_body(access_token="t", now=1_000, expired_at=1_000 + 24 * 3600 + 1),
            id="lifetime-over-24h",
        ),
        pytest.param(_token_body(access_token="t", now=True, expired_at=1_800), id="now-as-bool"),
        pytest.param(
            httpx.Response(200, json={"code": 0, "message": None, "response": None}),
            id="null-response",
        ),
        pytest.param(httpx.Response(200, text="<html>gateway error</html>"), id="non-json"),
        pytest.param(httpx.Response(200, json=["not", "an", "envelope"]), id="json-array"),
    ],
)
async def test_invalid_token_answers(
    manager: IamportTokenManager, upstream: respx.MockRouter, reply: httpx.Response
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=reply)
    with pytest.raises(UpstreamInvalidResponse) as caught:
        await manager.token()
    assert caught.value.provider == "benepia"
    assert caught.value.upstream_status == 200


async def test_lifetime_of_exactly_24h_is_accepted(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok("tok-1", ttl=24 * 3600))
    assert await manager.token() == "tok-1"


async def test_a_token_refresh_logs_the_status_getToken_answered(
    manager: IamportTokenManager, upstream: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok("tok-1"))
    with caplog.at_level(logging.INFO, logger="points_gateway.upstream"):
        assert await manager.token() == "tok-1"

    (line,) = [r.getMessage() for r in caplog.records if "iamport_get_token" in r.getMessage()]
    assert "'outcome': 'ok'" in line
    assert "'upstream_status': 200" in line


async def test_lifetime_of_1s_is_accepted(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok("tok-1", ttl=1))
    assert await manager.token() == "tok-1"


# --- invalidate ------------------------------------------------------------------------------


async def test_invalidate_current_token_forces_a_refresh(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TOKEN_URL).mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])
    assert await manager.token() == "tok-1"
    manager.invalidate("tok-1")
    assert await manager.token() == "tok-2"
    assert route.call_count == 2


async def test_invalidate_another_token_is_a_no_op(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TOKEN_URL).mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])
    assert await manager.token() == "tok-1"
    manager.invalidate("tok-0")
    manager.invalidate("")
    assert await manager.token() == "tok-1"
    assert route.call_count == 1


async def test_invalidate_before_any_token_is_harmless(manager: IamportTokenManager) -> None:
    manager.invalidate("tok-1")


# --- what is sent ------------------------------------------------------------------------------


async def test_get_token_request_carries_credentials_in_the_body_only(
    manager: IamportTokenManager, upstream: respx.MockRouter
) -> None:
    route = upstream.post(TOKEN_URL).mock(return_value=token_ok())
    await manager.token()
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/users/getToken"
    assert request.url.query == b""
    assert IMP_SECRET not in str(request.url)
    assert IMP_KEY not in str(request.url)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"imp_key": IMP_KEY, "imp_secret": IMP_SECRET}
    assert "authorization" not in request.headers


# --- through the app ---------------------------------------------------------------------------


async def test_data_call_401_refreshes_once_and_retries_once(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens = upstream.post(TOKEN_URL).mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])
    points = upstream.post(BENEPIA_URL).mock(
        side_effect=[
            httpx.Response(401, json={"code": -1, "message": "Unauthorized", "response": None}),
            benepia_ok(4200),
        ]
    )
    r = await client.get("/users/alice/points/benepia")
    assert r.status_code == 200, r.text
    assert r.json()["points"] == "4200"
    assert tokens.call_count == 2
    assert points.call_count == 2
    sent = [call.request.headers["authorization"] for call in points.calls]
    assert sent == ["Bearer tok-1", "Bearer tok-2"]
    for call in points.calls:
        assert "tok-" not in str(call.request.url)


async def test_data_call_401_twice_never_loops(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens = upstream.post(TOKEN_URL).mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])
    points = upstream.post(BENEPIA_URL).mock(
        return_value=httpx.Response(401, json={"code": -1, "message": "no", "response": None})
    )
    r = await client.get("/users/alice/points/benepia")
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "upstream_auth_failed"
    assert tokens.call_count == 2
    assert points.call_count == 2


async def test_cold_gateway_50_concurrent_requests_one_get_token(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens = upstream.post(TOKEN_URL).mock(side_effect=slow_token(0.05))
    points = upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())
    # One-shot queries are never collapsed, so this is 50 real data calls sharing one token.
    body = {"benepia_user": "alice.kim", "benepia_password": "pw"}
    replies = await asyncio.gather(
        *(client.post(f"/users/u{i}/points/benepia", json=body) for i in range(50))
    )
    assert [r.status_code for r in replies] == [200] * 50
    assert tokens.call_count == 1
    assert points.call_count == 50
    assert {call.request.headers["authorization"] for call in points.calls} == {"Bearer tok-1"}


# --- refreshing ahead: a valid token is never held up by getToken ---------------------------


class GatedTokens:
    """getToken: `first` at once, then every call hangs (up to 30 s) until released."""

    def __init__(self, first: str = "tok-1", then: str = "tok-2") -> None:
        self.first, self.then = first, then
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            return token_ok(self.first)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.wait_for(self.release.wait(), 30)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return token_ok(self.then)


def benepia(iamport: HttpxUpstream, clock: FakeClock, *, timeout: float = 4.0) -> BenepiaProvider:
    settings = BenepiaSettings(
        base_url=IAMPORT, imp_key=IMP_KEY, imp_secret=SecretStr(IMP_SECRET), timeout=timeout
    )
    return BenepiaProvider(settings, upstream=iamport, clock=clock)


ACCOUNT = BenepiaAccount(benepia_user="alice.kim", benepia_password=SecretStr("pw"))


async def test_a_hanging_refresh_inside_the_margin_never_holds_up_a_request(
    iamport: HttpxUpstream, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    gate = GatedTokens()
    tokens = upstream.post(TOKEN_URL).mock(side_effect=gate)
    points = upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    provider = benepia(iamport, clock)
    await provider.fetch_balance(ACCOUNT, CallContext(request_id="warm"))
    clock.now += 1800 - 30  # 30 s before expiry: inside the 30 s refresh margin

    # getToken now hangs (30 s): every request is still answered at once, with the current token.
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(provider.fetch_balance(ACCOUNT, CallContext(request_id=f"r{i}")) for i in range(20))
        ),
        timeout=2.0,
    )

    assert [a.points for a in answers] == [12000] * 20
    assert {c.request.headers["authorization"] for c in points.calls} == {"Bearer tok-1"}
    assert (gate.calls, gate.in_flight, gate.most_in_flight) == (2, 1, 1)
    gate.release.set()
    await asyncio.sleep(0.01)
    await provider.fetch_balance(ACCOUNT, CallContext(request_id="after"))
    assert points.calls.last.request.headers["authorization"] == "Bearer tok-2"
    assert tokens.call_count == 2
    await provider.aclose()


async def test_with_no_valid_token_left_requests_wait_for_the_refresh(
    manager: IamportTokenManager, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    gate = GatedTokens()
    upstream.post(TOKEN_URL).mock(side_effect=gate)
    assert await manager.token() == "tok-1"
    clock.now += 1800  # expired

    waiting = [asyncio.create_task(manager.token()) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    gate.release.set()

    assert await asyncio.wait_for(asyncio.gather(*waiting), 2.0) == ["tok-2"] * 5
    assert gate.calls == 2


async def test_a_refresh_ahead_that_times_out_is_logged_and_retried_by_a_later_request(
    iamport: HttpxUpstream,
    upstream: respx.MockRouter,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    gate = GatedTokens()
    upstream.post(TOKEN_URL).mock(side_effect=gate)
    manager = IamportTokenManager(
        iamport,
        imp_key=IMP_KEY,
        imp_secret=SecretStr(IMP_SECRET),
        refresh_margin=30.0,
        refresh_timeout=0.05,
        clock=clock,
    )
    assert await manager.token() == "tok-1"
    clock.now += 1800 - 10

    with caplog.at_level(logging.INFO, logger="points_gateway.upstream"):
        assert await manager.token() == "tok-1"
        await asyncio.sleep(0.2)  # the refresh's own timeout (0.05 s) has passed
        assert gate.calls == 2
        assert gate.cancelled == 1
        assert await manager.token() == "tok-1"  # still valid: kept, and getToken asked again
        gate.release.set()
        await asyncio.sleep(0.05)
        assert await manager.token() == "tok-2"

    assert gate.calls == 3
    outcomes = [r.getMessage() for r in caplog.records if "iamport_get_token" in r.getMessage()]
    assert len(outcomes) == 2
    assert "'outcome': 'upstream_timeout'" in outcomes[0]
    assert "'outcome': 'ok'" in outcomes[1]
    gc.collect()
    assert unhandled == []


async def test_closing_cancels_a_refresh_running_ahead(
    iamport: HttpxUpstream, upstream: respx.MockRouter, clock: FakeClock
) -> None:
    gate = GatedTokens()
    upstream.post(TOKEN_URL).mock(side_effect=gate)
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    provider = benepia(iamport, clock)
    await provider.fetch_balance(ACCOUNT, CallContext(request_id="warm"))
    clock.now += 1800 - 10
    await provider.fetch_balance(ACCOUNT, CallContext(request_id="ahead"))
    await asyncio.sleep(0.01)
    assert gate.in_flight == 1

    await asyncio.wait_for(provider.aclose(), 2.0)

    assert (gate.in_flight, gate.cancelled) == (0, 1)

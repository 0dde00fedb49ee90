"""`auth: session`: one login, reused until it nearly expires, refreshed once on a 401."""

from __future__ import annotations

import asyncio
import json
import textwrap

import httpx
import pytest
import respx
import yaml

from app.definitions.compiled import compile_definition
from app.definitions.format import Definition
from app.definitions.plugin import models
from app.definitions.provider import DeclarativeProvider
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import UpstreamConfig
from app.providers import CallContext, ProviderError
from tests.definitions.conftest import ACME, LOGIN_SECRET, SESSION_YAML, ServeDefinitions

LOGIN = f"{ACME}/auth/token"
POINTS = f"{ACME}/points"
NOW = 1_700_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def token_answer(token: str = "tok-1", lifetime: int = 1800, now: int = NOW) -> httpx.Response:
    body = {
        "code": 0,
        "message": None,
        "response": {"access_token": token, "now": now, "expired_at": now + lifetime},
    }
    return httpx.Response(200, json=body)


def points_answer(request: httpx.Request) -> httpx.Response:
    token = request.headers["authorization"].removeprefix("Bearer ")
    member = json.loads(request.content)["member"]
    return httpx.Response(
        200, json={"code": 0, "response": {"point": 300, "member": member, "token": token}}
    )


def provider(router: respx.MockRouter, clock: FakeClock) -> DeclarativeProvider:
    compiled = compile_definition(
        Definition.model_validate(yaml.safe_load(textwrap.dedent(SESSION_YAML)))
    )
    _, settings_model = models(compiled)
    settings = settings_model.model_validate({"client_secret": LOGIN_SECRET})
    config = UpstreamConfig(
        provider="acme_session", base_url=ACME, timeout=2.0, connect_timeout=1.0, max_bytes=1 << 20
    )
    upstream = HttpxUpstream(config, transport=httpx.MockTransport(router.async_handler))
    return DeclarativeProvider(compiled, settings, upstream, clock=clock)


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False, assert_all_mocked=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def account() -> object:
    compiled = compile_definition(
        Definition.model_validate(yaml.safe_load(textwrap.dedent(SESSION_YAML)))
    )
    account_model, _ = models(compiled)
    return account_model.model_validate({"member_id": "m-1"})


CALL = CallContext(request_id="req-1")


async def test_one_login_is_reused_until_the_refresh_margin(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    login = router.post(LOGIN).mock(side_effect=[token_answer("tok-1"), token_answer("tok-2")])
    points = router.post(POINTS).mock(side_effect=points_answer)
    served = provider(router, clock)
    for _ in range(3):
        assert (await served.fetch_balance(account(), CALL)).points == 300  # type: ignore[arg-type]
    assert login.call_count == 1
    sent = json.loads(login.calls.last.request.content)
    assert sent == {"secret": LOGIN_SECRET}
    clock.now += 1800 - 31  # still 31 s left: kept
    await served.fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert login.call_count == 1
    clock.now += 2  # 29 s left: inside the 30 s margin
    await served.fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert login.call_count == 2
    assert points.calls.last.request.headers["authorization"] == "Bearer tok-2"


async def test_the_lifetime_is_the_providers_own_whatever_its_clock_says(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    # The provider's clock is years behind ours: only expired_at - now counts.
    login = router.post(LOGIN).mock(return_value=token_answer(now=1_000_000, lifetime=600))
    router.post(POINTS).mock(side_effect=points_answer)
    served = provider(router, clock)
    await served.fetch_balance(account(), CALL)  # type: ignore[arg-type]
    clock.now += 600 - 31
    await served.fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert login.call_count == 1


async def test_a_401_refreshes_once_and_retries_once(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    login = router.post(LOGIN).mock(side_effect=[token_answer("old"), token_answer("new")])
    refused = httpx.Response(401, json={"code": -1})

    def answer(request: httpx.Request) -> httpx.Response:
        return (
            refused if request.headers["authorization"] == "Bearer old" else points_answer(request)
        )

    points = router.post(POINTS).mock(side_effect=answer)
    served = provider(router, clock)
    balance = await served.fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert balance.points == 300
    assert (login.call_count, points.call_count) == (2, 2)


async def test_a_second_401_is_auth_failed_never_a_loop(
    router: respx.MockRouter, clock: FakeClock
) -> None:
    login = router.post(LOGIN).mock(
        side_effect=[token_answer("a"), token_answer("b"), token_answer("c")]
    )
    points = router.post(POINTS).mock(return_value=httpx.Response(401, json={}))
    with pytest.raises(ProviderError) as raised:
        await provider(router, clock).fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert raised.value.code == "upstream_auth_failed"
    assert (login.call_count, points.call_count) == (2, 2)


async def test_fifty_cold_requests_log_in_once(router: respx.MockRouter, clock: FakeClock) -> None:
    async def slow_login(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return token_answer()

    login = router.post(LOGIN).mock(side_effect=slow_login)
    router.post(POINTS).mock(side_effect=points_answer)
    served = provider(router, clock)
    results = await asyncio.gather(*(served.fetch_balance(account(), CALL) for _ in range(50)))  # type: ignore[arg-type]
    assert all(r.points == 300 for r in results)
    assert login.call_count == 1


LOGIN_FAILURES = {
    "refused 401": (httpx.Response(401, json={}), "upstream_auth_failed"),
    "refused by its code": (
        httpx.Response(200, json={"code": 1, "message": "bad secret", "response": None}),
        "upstream_auth_failed",
    ),
    "no token": (
        httpx.Response(200, json={"code": 0, "response": {"now": NOW, "expired_at": NOW + 60}}),
        "upstream_invalid_response",
    ),
    "token not header-safe": (
        httpx.Response(
            200,
            json={
                "code": 0,
                "response": {"access_token": "a b", "now": NOW, "expired_at": NOW + 60},
            },
        ),
        "upstream_invalid_response",
    ),
    "already expired": (token_answer(lifetime=0), "upstream_invalid_response"),
    "lifetime of years": (token_answer(lifetime=10**8), "upstream_invalid_response"),
    "expiry as a string": (
        httpx.Response(
            200,
            json={
                "code": 0,
                "response": {"access_token": "t", "now": NOW, "expired_at": str(NOW + 60)},
            },
        ),
        "upstream_invalid_response",
    ),
    "login 500": (httpx.Response(500, json={"code": 0}), "upstream_error"),
    "login 429": (httpx.Response(429, headers={"retry-after": "5"}), "upstream_rate_limited"),
}


@pytest.mark.parametrize("case", list(LOGIN_FAILURES), ids=list(LOGIN_FAILURES))
async def test_login_failures_are_mapped_and_never_retried(
    router: respx.MockRouter, clock: FakeClock, case: str
) -> None:
    answer, code = LOGIN_FAILURES[case]
    login = router.post(LOGIN).mock(return_value=answer)
    points = router.post(POINTS).mock(side_effect=points_answer)
    with pytest.raises(ProviderError) as raised:
        await provider(router, clock).fetch_balance(account(), CALL)  # type: ignore[arg-type]
    assert raised.value.code == code
    assert login.call_count == 1
    assert points.call_count == 0
    assert LOGIN_SECRET not in raised.value.detail


async def test_a_session_provider_through_the_api(serve_definitions: ServeDefinitions) -> None:
    async with serve_definitions(SESSION_YAML) as gw:
        login = gw.upstream.post(LOGIN).mock(return_value=token_answer())
        gw.upstream.post(POINTS).mock(side_effect=points_answer)
        # Ids only (trusted_link): with auth disabled, the caller holds every scope.
        linked = await gw.client.put("/users/dave/accounts/acme_session", json={"member_id": "m-1"})
        assert linked.status_code == 201, linked.text
        answers = [await gw.client.get("/users/dave/points/acme_session") for _ in range(3)]
        metrics = (await gw.client.get("/metrics")).text
    assert [a.json()["points"] for a in answers] == ["300"] * 3
    assert login.call_count == 1
    refreshed = 'points_iamport_token_refreshes_total{outcome="ok",provider="acme_session"} 1.0'
    assert refreshed in metrics

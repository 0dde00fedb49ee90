"""Shared fixtures: test settings, an in-process client with its lifespan, respx upstreams."""

from __future__ import annotations

import enum
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import httpx
import hypothesis
import jwt
import pytest
import respx
from fastapi import FastAPI

import app.points.fetcher
import app.problems
from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.errors import GatewayError
from app.main import create_app
from app.problems import Problem
from app.providers.registry import BUILTIN_PLUGINS
from app.settings import Settings

IAMPORT = "https://iamport.test"
GAFAPAY = "https://gafapay.test:8443"
IMP_KEY = "test-imp-key"
IMP_SECRET = "sEcReT-imp-secret-0001"
GAFAPAY_TOKEN = "eyJ.sEcReT-gafapay-token.0002"
COMPANY_ID = "59388167894b4d10a04fe5da3b8a2104"
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
ALICE_GAFAPAY = "fb8f09210e0f46b7b4262d77f5b6c273"
BENEPIA_PASSWORD = "sEcReT-benepia-pw-0003"

TOKEN_URL = f"{IAMPORT}/users/getToken"
BENEPIA_URL = f"{IAMPORT}/benepia/point"
GAFAPAY_URL = f"{GAFAPAY}/gafapay/v3/reward_promotion/user_points"
PROBLEM = "application/problem+json"
# The real servers on 127.0.0.1 (emulators and gateway) that the served tests share.
pytest_plugins = ["tests.support.servers"]

SECRETS = (IMP_SECRET, GAFAPAY_TOKEN, BENEPIA_PASSWORD)

# The adapter and aggregator tests look at one upstream exchange at a time: no auth, no rate
# limit, no cache, no retry, no breaker. Later suites (tests/resilience, tests/security) turn each
# back on explicitly.
PLAIN: dict[str, object] = {
    "auth": {"mode": "disabled"},
    "limits": {"rate": None, "failed_auth_rate": None},
    "cache": {"ttl": 0, "stale_if_error": 0},
    "resilience": {
        "retry_attempts": 1,
        "breaker_consecutive_failures": 1_000_000,
        "breaker_min_calls": 1_000_000,
    },
}

TEST_ACCOUNTS: dict[str, dict[str, dict[str, str]]] = {
    "alice": {
        "benepia": {"benepia_user": "alice.kim", "benepia_password": BENEPIA_PASSWORD},
        "gafapay": {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY},
    },
    "bob": {"gafapay": {"gafapay_user_id": "0b0b", "currency_id": CURRENCY}},
    "carol": {"benepia": {"benepia_user": "carol.lee", "benepia_password": BENEPIA_PASSWORD}},
}


def customer_token(gafapay_user_id: str, *, lifetime: int = 3600, **claims: object) -> str:
    """A GafaPay customer session JWT for `gafapay_user_id`, as GafaPay issues it at login.

    The gateway checks its form and `sub` (app/accounts/ownership.py); its signature is
    GafaPay's to check, so the key here is any key.
    """
    body = {
        "sub": gafapay_user_id,
        "roles": ["ROLE_CUSTOMER"],
        "exp": int(time.time()) + lifetime,
        **claims,
    }
    return jwt.encode(body, "gafapay-test-signing-key-not-real-0000", algorithm="HS256")


# Hypothesis: today's example counts under CI (`.ci/run` sets CI=true), a fifth of them for a
# quick local run; tests without a count of their own follow the loaded profile.
IN_CI = os.environ.get("CI", "").lower() == "true"
hypothesis.settings.register_profile("ci", max_examples=100)
hypothesis.settings.register_profile("dev", max_examples=20)
hypothesis.settings.load_profile("ci" if IN_CI else "dev")


def examples(ci: int) -> int:
    """How many examples a property test runs: `ci` under CI, a fifth of it locally."""
    return ci if IN_CI else max(10, ci // 5)


def require_services() -> bool:
    """True in CI: tests needing PostgreSQL or Redis fail instead of skipping."""
    return os.environ.get("POINTS_REQUIRE_SERVICES") == "1"


def make_settings(
    iamport_url: str = IAMPORT, gafapay_url: str = GAFAPAY, **overrides: object
) -> Settings:
    """Settings for both providers, read from no environment."""
    values: dict[str, object] = {
        "sandbox": iamport_url.startswith("http://") or gafapay_url.startswith("http://"),
        "enabled_providers": ["benepia", "gafapay"],
        "providers": {
            "benepia": {
                "base_url": iamport_url,
                "imp_key": IMP_KEY,
                "imp_secret": IMP_SECRET,
                "channel_key": "channel-key-test",
            },
            "gafapay": {"base_url": gafapay_url, "company_id": COMPANY_ID, "token": GAFAPAY_TOKEN},
        },
        **PLAIN,
        **overrides,
    }
    return Settings.model_validate(values)


def make_store(
    accounts: dict[str, dict[str, dict[str, str]]] | None = None,
) -> MemoryAccountStore:
    """An in-memory store of test accounts."""
    plugins = {p.name: p for p in BUILTIN_PLUGINS}
    return MemoryAccountStore(load_accounts(accounts or TEST_ACCOUNTS, plugins, source="test"))


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to `app` in process, with its lifespan run around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield client


@pytest.fixture
def upstream() -> respx.MockRouter:
    """A respx router standing in for both providers (unmatched requests fail the test)."""
    return respx.MockRouter(assert_all_called=False, assert_all_mocked=True)


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def gateway_app(upstream: respx.MockRouter) -> AppFactory:
    """Build the app with the respx router as its outbound transport."""

    def build(
        settings: Settings | None = None,
        accounts: dict[str, dict[str, dict[str, str]]] | None = None,
    ) -> FastAPI:
        return create_app(
            settings or make_settings(),
            transport=httpx.MockTransport(upstream.async_handler),
            store=make_store(accounts),
        )

    return build


@pytest.fixture
async def client(gateway_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the default test app (respx upstreams)."""
    async with serve_in_process(gateway_app()) as c:
        yield c


def token_ok(token: str = "tok-1", ttl: int = 1800, now: int = 1_700_000_000) -> httpx.Response:
    """An iamport getToken success."""
    return httpx.Response(
        200,
        json={
            "code": 0,
            "message": None,
            "response": {"access_token": token, "now": now, "expired_at": now + ttl},
        },
    )


def benepia_ok(point: int = 12000) -> httpx.Response:
    """A Benepia point success."""
    return httpx.Response(200, json={"code": 0, "message": "", "response": {"point": point}})


def gafapay_ok(
    points: str = "250.0", user_id: str = ALICE_GAFAPAY, currency: str = CURRENCY
) -> httpx.Response:
    """A GafaPay user_points success (points written as an exact JSON number)."""
    body = (
        '{"success":1,"error":[],"data":{"user_points":{"id":"fd5fd822caa8418d9c0bbbbfc54e0b21",'
        f'"user_id":"{user_id}","user_type":2,"points":{points},"currency_id":"{currency}"}}}}}}'
    )
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


class _Absent(enum.Enum):
    ABSENT = enum.auto()


# As an expected problem member: the member must not be in the body at all.
ABSENT: Final = _Absent.ABSENT


def assert_upstream_problem(
    response: httpx.Response,
    status: int,
    code: str,
    *,
    provider: str,
    upstream_status: int | None = None,
    upstream_code: str | Literal[_Absent.ABSENT] | None = None,
) -> dict[str, object]:
    """The answer is the problem+json of `code` about `provider`; returns the parsed body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert isinstance(body, dict)
    assert body["code"] == code
    assert body["status"] == status
    assert body["provider"] == provider
    assert body["type"] == f"urn:points-gateway:problem:{code}"
    assert body.get("upstream_status") == upstream_status
    if upstream_code is ABSENT:
        assert "upstream_code" not in body
    else:
        assert body.get("upstream_code") == upstream_code
    assert body["request_id"] == response.headers["x-request-id"]
    if status != 503:
        assert "retry-after" not in response.headers
        assert "retry_after" not in body
    return body


def mock_upstreams(
    upstream: respx.MockRouter, *, benepia: Any = None, gafapay: Any = None
) -> tuple[respx.Route, respx.Route, respx.Route]:
    """getToken (always ok) and both data routes (a Response, a list, a callable or an error)."""
    tokens = upstream.post(TOKEN_URL).mock(return_value=token_ok())
    point = upstream.post(BENEPIA_URL)
    gafa = upstream.get(GAFAPAY_URL)
    for route, effect, default in ((point, benepia, benepia_ok()), (gafa, gafapay, gafapay_ok())):
        if effect is None:
            route.mock(return_value=default)
        elif isinstance(effect, httpx.Response):
            route.mock(return_value=effect)
        else:
            route.mock(side_effect=effect)
    return tokens, point, gafa


@pytest.fixture
def rendered_errors(monkeypatch: pytest.MonkeyPatch) -> list[GatewayError]:
    """Every GatewayError the app renders as a problem (handlers and aggregated entries)."""
    seen: list[GatewayError] = []
    original = app.problems.problem_from

    def spy(error: GatewayError, *, instance: str | None, request_id: str | None) -> Problem:
        seen.append(error)
        return original(error, instance=instance, request_id=request_id)

    monkeypatch.setattr(app.problems, "problem_from", spy)
    monkeypatch.setattr(app.points.fetcher, "problem_from", spy)
    return seen

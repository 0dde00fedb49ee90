"""Failed authentications are counted per client address, on a gateway served by uvicorn over
127.0.0.1, in memory and on the shared Redis.

Each test calls from loopback source addresses of its own (all of 127.0.0.0/8 reaches a listener
on 127.0.0.1), and forwarded addresses are random ones of 2001:db8::/32, so counts on the shared
Redis never mix between tests or concurrent runs. Nothing here depends on timing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.sandbox.servers import Served, bind
from app.security.failed_auth import FailedAuthLimit
from app.security.rate_limit import RateLimitExceeded
from app.settings import Settings
from tests.conftest import make_store
from tests.operations.conftest import CapturedLogs, json_logs  # noqa: F401
from tests.security.conftest import (
    SECURITY_ACCOUNTS,
    ServeGateway,
    api_key,
    assert_problem,
    bearer,
    key_with,
    secure_settings,
    user_token,
)
from tests.support.servers import HOST, serving

LIMIT = 5
ALICE = "/users/alice/accounts"
WRONG_KEY = "pgk-wrong-key-0123456789abcdef"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for each counting backend."""
    if request.param == "memory":
        return {}
    url: str = request.getfixturevalue("shared_redis_url")
    return {"redis_url": url}


def settings_with(*, trusted: list[str] | None = None, **overrides: Any) -> Settings:
    limits: dict[str, object] = {"failed_auth_rate": f"{LIMIT}/minute"}
    if trusted is not None:
        limits["trusted_proxies"] = trusted
    return secure_settings(limits=limits, **overrides)


def loopback() -> str:
    """A loopback source address of this test's own (never 127.0.0.1)."""
    return f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def forwarded() -> str:
    """A client address of this test's own, as a proxy would forward it."""
    return str(ip_network("2001:db8::/32")[uuid.uuid4().int >> 32])


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The gateway served by uvicorn on 127.0.0.1 (no provider is called by these routes)."""
    gateway = Served(create_app(settings, store=make_store(SECURITY_ACCOUNTS)), bind(HOST, 0))
    with serving([gateway]):
        yield gateway.url


@contextmanager
def calling_from(url: str, source: str) -> Iterator[httpx.Client]:
    """A client whose connections leave from `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=10.0) as client:
        yield client


def assert_failed_auth_limited(response: httpx.Response) -> None:
    body = assert_problem(response, 429, "rate_limited")
    assert "failed authentications" in body["detail"]
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 120
    assert body["retry_after"] == int(retry_after)
    assert response.headers["ratelimit-limit"] == str(LIMIT)
    assert response.headers["ratelimit-remaining"] == "0"
    assert response.headers["ratelimit-reset"].isdigit()
    assert "www-authenticate" not in response.headers


def wrong_keys_then_garbage_bearers(client: httpx.Client, **headers: str) -> list[int]:
    """LIMIT failures: wrong X-API-Key values, then garbage bearer tokens."""
    statuses = []
    for i in range(LIMIT):
        sent = api_key(f"{WRONG_KEY}-{i}") if i < LIMIT // 2 else bearer(f"garbage.{i}.token")
        statuses.append(client.get(ALICE, headers={**sent, **headers}).status_code)
    return statuses


def test_failures_are_401_up_to_the_limit_then_429_and_no_guess_is_checked(
    backend: dict[str, Any],
) -> None:
    with (
        served(settings_with(**backend)) as url,
        calling_from(url, loopback()) as guesser,
        calling_from(url, loopback()) as bystander,
    ):
        assert wrong_keys_then_garbage_bearers(guesser) == [401] * LIMIT
        assert_failed_auth_limited(guesser.get(ALICE, headers=bearer("garbage.crossing.token")))
        # Over the limit, even valid credentials are refused unchecked.
        assert_failed_auth_limited(guesser.get(ALICE, headers=bearer(user_token("alice"))))
        assert_failed_auth_limited(guesser.get(ALICE, headers=api_key(key_with("accounts:read"))))
        # Another address is unaffected.
        assert bystander.get(ALICE, headers=bearer(user_token("alice"))).status_code == 200
        assert bystander.get(ALICE, headers=api_key(WRONG_KEY)).status_code == 401


@pytest.mark.parametrize("trusted", [[], ["192.0.2.0/24"]], ids=["no-proxies", "other-proxies"])
def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    backend: dict[str, Any], trusted: list[str]
) -> None:
    with (
        served(settings_with(trusted=trusted, **backend)) as url,
        calling_from(url, loopback()) as guesser,
    ):
        spoofed = [
            guesser.get(ALICE, headers={**api_key(WRONG_KEY), "x-forwarded-for": forwarded()})
            for _ in range(LIMIT)
        ]
        assert [r.status_code for r in spoofed] == [401] * LIMIT
        last = guesser.get(ALICE, headers={**api_key(WRONG_KEY), "x-forwarded-for": forwarded()})
        assert_failed_auth_limited(last)


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(
    backend: dict[str, Any],
) -> None:
    proxy_address = loopback()
    guesser, other = forwarded(), forwarded()
    settings = settings_with(trusted=[proxy_address], **backend)
    with served(settings) as url, calling_from(url, proxy_address) as proxy:
        assert (
            wrong_keys_then_garbage_bearers(proxy, **{"x-forwarded-for": guesser}) == [401] * LIMIT
        )
        crossing = proxy.get(ALICE, headers={**api_key(WRONG_KEY), "x-forwarded-for": guesser})
        assert_failed_auth_limited(crossing)
        valid = {**bearer(user_token("alice")), "x-forwarded-for": guesser}
        assert_failed_auth_limited(proxy.get(ALICE, headers=valid))
        # What the guesser writes left of the proxy's entry does not get it out.
        escape = {**bearer(user_token("alice")), "x-forwarded-for": f"{other}, {guesser}"}
        assert_failed_auth_limited(proxy.get(ALICE, headers=escape))
        # Other callers behind the same proxy are their own addresses.
        theirs = {**bearer(user_token("alice")), "x-forwarded-for": other}
        assert proxy.get(ALICE, headers=theirs).status_code == 200
        wrong = {**api_key(WRONG_KEY), "x-forwarded-for": other}
        assert proxy.get(ALICE, headers=wrong).status_code == 401
        # The proxy's own requests (no header) are not the guesser's either.
        assert proxy.get(ALICE, headers=bearer(user_token("alice"))).status_code == 200


def test_successful_requests_are_never_counted(backend: dict[str, Any]) -> None:
    with served(settings_with(**backend)) as url, calling_from(url, loopback()) as caller:
        token = bearer(user_token("alice"))
        statuses = {caller.get(ALICE, headers=token).status_code for _ in range(600)}
        assert statuses == {200}
        assert wrong_keys_then_garbage_bearers(caller) == [401] * LIMIT
        assert_failed_auth_limited(caller.get(ALICE, headers=api_key(WRONG_KEY)))


def test_another_replica_checks_one_more_guess_then_refuses_too(shared_redis_url: str) -> None:
    """The documented cost of the cheap hot path: a replica learns the shared count on a failure."""
    settings = settings_with(redis_url=shared_redis_url)
    source = loopback()
    with (
        served(settings) as first_url,
        served(settings) as second_url,
        calling_from(first_url, source) as first,
        calling_from(second_url, source) as second,
    ):
        assert wrong_keys_then_garbage_bearers(first) == [401] * LIMIT
        assert_failed_auth_limited(first.get(ALICE, headers=api_key(WRONG_KEY)))
        # The second replica has not seen this address fail: it checks what it is sent...
        assert second.get(ALICE, headers=bearer(user_token("alice"))).status_code == 200
        # ...until one more failure meets the shared count.
        assert_failed_auth_limited(second.get(ALICE, headers=api_key(WRONG_KEY)))
        assert_failed_auth_limited(second.get(ALICE, headers=bearer(user_token("alice"))))


def test_the_log_lines_name_the_client_address(json_logs: CapturedLogs) -> None:  # noqa: F811
    proxy_address, client = loopback(), forwarded()
    with served(settings_with(trusted=[proxy_address])) as url:
        with calling_from(url, proxy_address) as proxy:
            for _ in range(LIMIT + 1):
                proxy.get(ALICE, headers={**api_key(WRONG_KEY), "x-forwarded-for": client})
            proxy.get(ALICE, headers={**bearer(user_token("alice")), "x-forwarded-for": client})
        direct = loopback()
        with calling_from(url, direct) as caller:
            ok = caller.get(ALICE, headers=bearer(user_token("alice")))
            assert ok.status_code == 200

    failures = json_logs.events("authentication_failed")
    assert len(failures) == LIMIT + 1, "one warning per checked failure, none for the refused"
    for line in failures:
        assert line["level"] == "warning"
        assert line["client"] == client
        assert line["credential"] == "api_key"
        assert line["reason"] == "The API key is not valid."
    assert "refused_for_s" not in failures[0]
    assert failures[-1]["refused_for_s"] >= 1
    requests = json_logs.events("request")
    assert [(r["client"], r["status"]) for r in requests if r["client"] == client] == [
        *[(client, 401)] * LIMIT,
        (client, 429),
        (client, 429),
    ]
    assert [r["client"] for r in requests if r["status"] == 200] == [direct]
    assert WRONG_KEY not in json_logs.text


async def test_wrong_metrics_tokens_are_counted_too(serve_gateway: ServeGateway) -> None:
    token = "metrics-token-0123456789"
    settings = settings_with(metrics_token=token)
    async with serve_gateway(settings) as gw, gw.client_at("198.18.0.1") as client:
        for i in range(LIMIT):
            wrong = await client.get("/metrics", headers=bearer(f"{token}-{i}"))
            assert wrong.status_code == 401
        assert_failed_auth_limited(await client.get("/metrics", headers=bearer(f"{token}-x")))
        assert_failed_auth_limited(await client.get("/metrics", headers=bearer(token)))
        assert (await gw.client.get("/metrics", headers=bearer(token))).status_code == 200


async def test_a_refusal_lasts_its_retry_after_then_guesses_are_checked_again() -> None:
    now = [1000.0]
    limit = FailedAuthLimit("2/minute", clock=lambda: now[0])
    address = "198.51.100.7"
    for _ in range(2):
        limit.refuse_if_over(address)
        await limit.count(address)
    limit.refuse_if_over(address)  # at the limit, not over it: this guess is checked
    with pytest.raises(RateLimitExceeded) as crossing:
        await limit.count(address)
    assert crossing.value.limit == 2
    now[0] += crossing.value.reset_after - 0.5
    with pytest.raises(RateLimitExceeded) as refused:
        limit.refuse_if_over(address)
    assert refused.value.reset_after == 1
    limit.refuse_if_over("198.51.100.8")
    now[0] += 0.5
    limit.refuse_if_over(address)  # checked again; its next failure meets the window's count

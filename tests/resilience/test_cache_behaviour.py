"""The balance cache through the API: TTL, no-cache, stale-if-error, invalidation, single-flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from pydantic import BaseModel

from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.accounts.store import AccountInfo, AccountStore, LinkedAccount
from app.errors import StoreUnavailable
from app.main import create_app
from app.providers.base import Ownership
from app.providers.registry import BUILTIN_PLUGINS
from app.resilience.cache import MemoryBalanceCache
from app.resilience.single_flight import SingleFlight
from app.settings import Settings
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_PASSWORD,
    CURRENCY,
    GAFAPAY,
    IAMPORT,
    PROBLEM,
    SECRETS,
    TEST_ACCOUNTS,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)

ALICE = "/users/alice/points"
ALICE_GAFAPAY_ROUTE = "/users/alice/points/gafapay"
ALICE_GAFAPAY_ACCOUNT = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
NO_CACHE = {"cache-control": "no-cache"}


def cached_settings(ttl: float = 30, stale_if_error: float = 600, **overrides: object) -> Settings:
    """Settings with the cache on (retries and breaker stay off unless overridden)."""
    cache = {"ttl": ttl, "stale_if_error": stale_if_error}
    return make_settings(IAMPORT, GAFAPAY, cache=cache, **overrides)


def balances(r: httpx.Response, *, complete: bool = True) -> dict[str, dict[str, Any]]:
    """The entries of a 200 merged answer, by provider."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["complete"] is complete
    assert r.headers["x-points-complete"] == ("true" if complete else "false")
    return {b["provider"]: b for b in body["balances"]}


def memory_cache(app: FastAPI) -> MemoryBalanceCache:
    cache = app.state.gateway.aggregator.fetcher.cache
    assert isinstance(cache, MemoryBalanceCache)
    return cache


class SwitchableStore(MemoryAccountStore):
    """The test accounts in memory; while `down`, every call raises StoreUnavailable."""

    def __init__(self) -> None:
        plugins = {p.name: p for p in BUILTIN_PLUGINS}
        super().__init__(load_accounts(TEST_ACCOUNTS, plugins, source="test"))
        self.down = False
        self.linked_calls = 0
        self.all_linked = asyncio.Event()
        self.expected_calls = 0

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("the test store is down", retry_after=2)

    async def linked(self, user_id: str) -> Mapping[str, LinkedAccount]:
        self._check()
        self.linked_calls += 1
        if self.linked_calls == self.expected_calls:
            self.all_linked.set()
        return await super().linked(user_id)

    async def accounts(self, user_id: str) -> list[AccountInfo]:
        self._check()
        return await super().accounts(user_id)

    async def upsert(
        self,
        user_id: str,
        provider: str,
        account: BaseModel,
        *,
        masked_id: str,
        ownership: Ownership,
    ) -> tuple[AccountInfo, bool]:
        self._check()
        return await super().upsert(
            user_id, provider, account, masked_id=masked_id, ownership=ownership
        )

    async def delete(self, user_id: str, provider: str) -> bool:
        self._check()
        return await super().delete(user_id, provider)

    def note_fetched(self, user_id: str, providers: Sequence[str]) -> None:
        if not self.down:
            super().note_fetched(user_id, providers)

    async def ping(self) -> None:
        self._check()


def app_with_store(upstream: respx.MockRouter, settings: Settings, store: AccountStore) -> FastAPI:
    return create_app(settings, transport=httpx.MockTransport(upstream.async_handler), store=store)


# --- TTL --------------------------------------------------------------------------------------


async def test_ttl_hit_makes_no_upstream_call(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        first = balances(await client.get(ALICE))
        second = balances(await client.get(ALICE))
        single = await client.get(ALICE_GAFAPAY_ROUTE)
    assert (tokens.call_count, point.call_count, gafa.call_count) == (1, 1, 1)
    for name in ("benepia", "gafapay"):
        assert first[name]["cached"] is False
        assert second[name]["cached"] is True
        assert second[name]["stale"] is False
        assert second[name]["status"] == "ok"
        assert second[name]["as_of"] == first[name]["as_of"]
        assert second[name]["points"] == first[name]["points"]
        assert second[name]["unit"] == first[name]["unit"]
    assert single.status_code == 200, single.text
    assert single.json() == second["gafapay"]


async def test_after_ttl_a_fresh_fetch(gateway_app: AppFactory, upstream: respx.MockRouter) -> None:
    _, point, gafa = mock_upstreams(upstream)
    async with serve_in_process(gateway_app(cached_settings(ttl=0.2))) as client:
        first = balances(await client.get(ALICE))
        await asyncio.sleep(0.25)
        second = balances(await client.get(ALICE))
    assert (point.call_count, gafa.call_count) == (2, 2)
    for name in ("benepia", "gafapay"):
        assert second[name]["cached"] is False
        assert second[name]["as_of"] != first[name]["as_of"]


async def test_provider_ttl_overrides_the_default(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point, gafa = mock_upstreams(upstream)
    config = make_settings(cache={"ttl": 30, "provider_ttl": {"gafapay": 0}, "stale_if_error": 0})
    async with serve_in_process(gateway_app(config)) as client:
        await client.get(ALICE)
        second = balances(await client.get(ALICE))
    assert second["benepia"]["cached"] is True
    assert second["gafapay"]["cached"] is False
    assert (point.call_count, gafa.call_count) == (1, 2)


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0", "No-Cache", "private, no-cache"])
async def test_cache_control_no_cache_forces_a_fetch(
    gateway_app: AppFactory, upstream: respx.MockRouter, directive: str
) -> None:
    _, point, gafa = mock_upstreams(upstream)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        await client.get(ALICE)
        fresh = balances(await client.get(ALICE, headers={"cache-control": directive}))
        single = await client.get(ALICE_GAFAPAY_ROUTE, headers={"cache-control": directive})
        # The fresh value replaced the cached one.
        after = balances(await client.get(ALICE))
    assert (point.call_count, gafa.call_count) == (2, 3)
    assert fresh["gafapay"]["cached"] is False
    assert single.json()["cached"] is False
    assert after["gafapay"]["cached"] is True
    assert after["gafapay"]["as_of"] == single.json()["as_of"]


# --- stale-if-error ---------------------------------------------------------------------------


async def test_stale_if_error_serves_the_old_value(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok(), httpx.Response(500)])
    async with serve_in_process(gateway_app(cached_settings(ttl=0.1))) as client:
        first = balances(await client.get(ALICE))
        await asyncio.sleep(0.15)
        second = balances(await client.get(ALICE))
    assert gafa.call_count == 2
    entry = second["gafapay"]
    assert entry["status"] == "ok"
    assert entry["cached"] is True
    assert entry["stale"] is True
    assert entry["points"] == "250.0"
    assert entry["as_of"] == first["gafapay"]["as_of"]
    assert entry["error"] is None
    assert second["benepia"]["stale"] is False


async def test_no_cache_still_falls_back_to_stale(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok(), httpx.ConnectError("refused")])
    async with serve_in_process(gateway_app(cached_settings())) as client:
        first = (await client.get(ALICE_GAFAPAY_ROUTE)).json()
        r = await client.get(ALICE_GAFAPAY_ROUTE, headers=NO_CACHE)
    assert gafa.call_count == 2
    assert r.status_code == 200, r.text
    assert r.json()["cached"] is True
    assert r.json()["stale"] is True
    assert r.json()["as_of"] == first["as_of"]


async def test_beyond_the_stale_window_the_error_is_answered(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=[gafapay_ok(), httpx.Response(500)])
    config = cached_settings(ttl=0.1, stale_if_error=0.2)
    async with serve_in_process(gateway_app(config)) as client:
        await client.get(ALICE_GAFAPAY_ROUTE)
        await asyncio.sleep(0.35)
        r = await client.get(ALICE_GAFAPAY_ROUTE)
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "upstream_error"
    assert r.json()["upstream_status"] == 500


async def test_a_rejection_is_not_masked_by_a_stale_value(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    rejected = httpx.Response(200, json={"success": 0, "error": ["account closed"], "data": None})
    mock_upstreams(upstream, gafapay=[gafapay_ok(), rejected, rejected])
    async with serve_in_process(gateway_app(cached_settings(ttl=0.1))) as client:
        await client.get(ALICE)
        await asyncio.sleep(0.15)
        merged = balances(await client.get(ALICE), complete=False)
        single = await client.get(ALICE_GAFAPAY_ROUTE, headers=NO_CACHE)
    assert merged["gafapay"]["status"] == "error"
    assert merged["gafapay"]["error"]["code"] == "provider_rejected"
    assert merged["gafapay"]["points"] is None
    assert single.status_code == 422, single.text
    assert single.json()["code"] == "provider_rejected"


async def test_stale_value_covers_an_open_breaker(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok(), httpx.Response(500)])
    config = cached_settings(
        ttl=0.1,
        resilience={
            "retry_attempts": 1,
            "breaker_consecutive_failures": 1,
            "breaker_open_seconds": 30,
        },
    )
    async with serve_in_process(gateway_app(config)) as client:
        first = (await client.get(ALICE_GAFAPAY_ROUTE)).json()
        await asyncio.sleep(0.15)
        failing = (await client.get(ALICE_GAFAPAY_ROUTE)).json()  # opens the breaker
        open_ = await client.get(ALICE_GAFAPAY_ROUTE)
        providers = (await client.get("/providers")).json()["providers"]
    assert gafa.call_count == 2
    assert failing["stale"] is True
    assert open_.status_code == 200, open_.text
    assert open_.json()["stale"] is True
    assert open_.json()["as_of"] == first["as_of"]
    assert {p["name"]: p["circuit"]["state"] for p in providers}["gafapay"] == "open"


# --- invalidation -----------------------------------------------------------------------------


async def test_relinking_drops_the_cached_balance(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok("250.0"), gafapay_ok("3.5")])
    async with serve_in_process(gateway_app(cached_settings())) as client:
        assert (await client.get(ALICE_GAFAPAY_ROUTE)).json()["points"] == "250.0"
        r = await client.put("/users/alice/accounts/gafapay", json=ALICE_GAFAPAY_ACCOUNT)
        assert r.status_code == 200, r.text
        after = await client.get(ALICE_GAFAPAY_ROUTE)
    assert gafa.call_count == 2
    assert after.json()["cached"] is False
    assert after.json()["points"] == "3.5"


async def test_unlinking_drops_the_cached_balance(
    upstream: respx.MockRouter,
) -> None:
    mock_upstreams(upstream)
    store = SwitchableStore()
    app = app_with_store(upstream, cached_settings(), store)
    async with serve_in_process(app) as client:
        balances(await client.get(ALICE))
        assert set(memory_cache(app)._entries) == {"benepia:alice", "gafapay:alice"}
        r = await client.delete("/users/alice/accounts/gafapay")
        assert r.status_code == 204, r.text
        assert set(memory_cache(app)._entries) == {"benepia:alice"}
        # Observable too: with the store down, only what is still cached is answered.
        store.down = True
        left = balances(await client.get(ALICE), complete=False)
    assert set(left) == {"benepia"}


async def test_relink_then_link_again_fetches(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        await client.get(ALICE_GAFAPAY_ROUTE)
        assert (await client.delete("/users/alice/accounts/gafapay")).status_code == 204
        gone = await client.get(ALICE_GAFAPAY_ROUTE)
        assert gone.status_code == 404
        assert gone.json()["code"] == "account_not_linked"
        put = await client.put("/users/alice/accounts/gafapay", json=ALICE_GAFAPAY_ACCOUNT)
        assert put.status_code == 201, put.text
        again = await client.get(ALICE_GAFAPAY_ROUTE)
    assert again.json()["cached"] is False
    assert gafa.call_count == 2


async def test_relink_during_a_fetch_does_not_cache_the_old_balance(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    old_fetch_started = asyncio.Event()
    release_old = asyncio.Event()

    async def gafapay(request: httpx.Request) -> httpx.Response:
        user = request.url.params["user_id"]
        if user == ALICE_GAFAPAY:
            old_fetch_started.set()
            await asyncio.wait_for(release_old.wait(), 5)
            return gafapay_ok("250.0")
        return gafapay_ok("1", user_id=user)

    mock_upstreams(upstream, gafapay=gafapay)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        old = asyncio.create_task(client.get(ALICE_GAFAPAY_ROUTE))
        await asyncio.wait_for(old_fetch_started.wait(), 2)
        new_account = {"gafapay_user_id": "0abc", "currency_id": CURRENCY}
        put = await client.put("/users/alice/accounts/gafapay", json=new_account)
        assert put.status_code == 200, put.text
        release_old.set()
        await asyncio.wait_for(old, 2)
        after = await client.get(ALICE_GAFAPAY_ROUTE)
    assert after.status_code == 200, after.text
    # The new account's balance, not the old account's cached one.
    assert after.json()["points"] == "1"


async def test_get_after_relink_does_not_join_the_old_accounts_fetch(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    old_fetch_started = asyncio.Event()
    release_old = asyncio.Event()

    async def gafapay(request: httpx.Request) -> httpx.Response:
        user = request.url.params["user_id"]
        if user == ALICE_GAFAPAY:
            old_fetch_started.set()
            await asyncio.wait_for(release_old.wait(), 5)
            return gafapay_ok("250.0")
        return gafapay_ok("1", user_id=user)

    mock_upstreams(upstream, gafapay=gafapay)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        old = asyncio.create_task(client.get(ALICE_GAFAPAY_ROUTE))
        await asyncio.wait_for(old_fetch_started.wait(), 2)
        new_account = {"gafapay_user_id": "0abc", "currency_id": CURRENCY}
        put = await client.put("/users/alice/accounts/gafapay", json=new_account)
        assert put.status_code == 200, put.text
        new = asyncio.create_task(client.get(ALICE_GAFAPAY_ROUTE))
        await asyncio.sleep(0.05)
        release_old.set()
        await asyncio.wait_for(old, 2)
        after = await asyncio.wait_for(new, 2)
    assert after.status_code == 200, after.text
    # Asked after the relink: the new account's balance, never the old account's.
    assert after.json()["points"] == "1"


# --- one-shot queries are never cached --------------------------------------------------------


async def test_one_shot_result_is_never_served_to_get(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok("999"), gafapay_ok("250.0")])
    async with serve_in_process(gateway_app(cached_settings())) as client:
        once = await client.post(ALICE_GAFAPAY_ROUTE, json=ALICE_GAFAPAY_ACCOUNT)
        got = await client.get(ALICE_GAFAPAY_ROUTE)
    assert once.status_code == 200, once.text
    assert once.json()["points"] == "999"
    assert once.json()["cached"] is False
    assert got.json()["points"] == "250.0"
    assert got.json()["cached"] is False
    assert gafa.call_count == 2


async def test_one_shot_after_a_cached_get_still_calls_upstream(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point, gafa = mock_upstreams(upstream, gafapay=[gafapay_ok("250.0"), gafapay_ok("999")])
    async with serve_in_process(gateway_app(cached_settings())) as client:
        await client.get(ALICE)
        once = await client.post(ALICE_GAFAPAY_ROUTE, json=ALICE_GAFAPAY_ACCOUNT)
        benepia_once = await client.post(
            "/users/alice/points/benepia",
            json={"benepia_user": "alice.kim", "benepia_password": BENEPIA_PASSWORD},
        )
        cached = await client.get(ALICE_GAFAPAY_ROUTE)
    assert once.json()["points"] == "999"
    assert once.json()["cached"] is False
    assert benepia_once.json()["cached"] is False
    assert (point.call_count, gafa.call_count) == (2, 2)
    # ...and the one-shot did not overwrite the linked account's cached value either.
    assert cached.json()["points"] == "250.0"
    assert cached.json()["cached"] is True


async def test_cache_keys_hold_no_secret(upstream: respx.MockRouter) -> None:
    mock_upstreams(upstream)
    app = app_with_store(upstream, cached_settings(), SwitchableStore())
    async with serve_in_process(app) as client:
        await client.get(ALICE)
        await client.get("/users/carol/points")
        await client.post(
            ALICE_GAFAPAY_ROUTE, json={**ALICE_GAFAPAY_ACCOUNT, "token": "eyJ.sEcReT-own-token"}
        )
        entries = dict(memory_cache(app)._entries)
    assert set(entries) == {"benepia:alice", "gafapay:alice", "benepia:carol"}
    for key, (_, value) in entries.items():
        for secret in (*SECRETS, "sEcReT-own-token", "alice.kim", "carol.lee"):
            assert secret not in key
            assert secret not in repr(value)


# --- single-flight ----------------------------------------------------------------------------


async def test_concurrent_cold_requests_share_one_upstream_call(
    upstream: respx.MockRouter,
) -> None:
    n = 200
    store = SwitchableStore()
    store.expected_calls = n

    async def slow(reply: httpx.Response) -> httpx.Response:
        # Held until every request has read its links (and so reached the cache), then 0.1 s.
        await asyncio.wait_for(store.all_linked.wait(), 10)
        await asyncio.sleep(0.1)
        return reply

    async def slow_benepia(request: httpx.Request) -> httpx.Response:
        return await slow(benepia_ok())

    async def slow_gafapay(request: httpx.Request) -> httpx.Response:
        return await slow(gafapay_ok())

    tokens, point, gafa = mock_upstreams(upstream, benepia=slow_benepia, gafapay=slow_gafapay)
    app = app_with_store(upstream, cached_settings(), store)
    async with serve_in_process(app) as client:
        answers = await asyncio.wait_for(asyncio.gather(*(client.get(ALICE) for _ in range(n))), 15)
    assert (tokens.call_count, point.call_count, gafa.call_count) == (1, 1, 1)
    assert all(r.status_code == 200 for r in answers)
    bodies = {r.text for r in answers}
    assert len(bodies) == 1
    assert all(not b["cached"] for b in answers[0].json()["balances"])


async def test_failures_are_shared_but_not_cached(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def slow_failure(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.1)
        return httpx.Response(500)

    _, _, gafa = mock_upstreams(upstream, gafapay=slow_failure)
    async with serve_in_process(gateway_app(cached_settings())) as client:
        answers = await asyncio.gather(*(client.get(ALICE_GAFAPAY_ROUTE) for _ in range(10)))
        assert gafa.call_count == 1
        await client.get(ALICE_GAFAPAY_ROUTE)
    assert {r.status_code for r in answers} == {502}
    assert gafa.call_count == 2


async def test_unit_single_flight_shares_one_call() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.create_task(flights.do("k", call)) for _ in range(5)]
    other = asyncio.create_task(flights.do("other", call))
    await asyncio.sleep(0)
    assert flights.in_flight() == 2
    gate.set()
    assert await asyncio.gather(*waiters) == [42] * 5
    assert await other == 42
    assert calls == 2
    assert flights.in_flight() == 0
    assert await flights.do("k", call) == 42
    assert calls == 3


async def test_unit_single_flight_shares_a_failure_then_forgets_it() -> None:
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise RuntimeError("upstream down")

    waiters = [asyncio.create_task(flights.do("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert flights.in_flight() == 0


async def test_unit_one_waiter_giving_up_does_not_cancel_the_call() -> None:
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def call() -> int:
        await gate.wait()
        return 7

    impatient = asyncio.create_task(flights.do("k", call))
    patient = asyncio.create_task(flights.do("k", call))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    gate.set()
    assert await patient == 7


# --- the account store is down ----------------------------------------------------------------


async def test_store_down_answers_from_the_cache(upstream: respx.MockRouter) -> None:
    _, point, gafa = mock_upstreams(upstream)
    store = SwitchableStore()
    async with serve_in_process(app_with_store(upstream, cached_settings(), store)) as client:
        first = balances(await client.get(ALICE))
        store.down = True
        merged = await client.get(ALICE)
        single = await client.get(ALICE_GAFAPAY_ROUTE)
        narrowed = await client.get(ALICE, params={"providers": "gafapay"})
    # Which providers are linked is unknown: the answer is what the cache holds, incomplete.
    entries = balances(merged, complete=False)
    assert set(entries) == {"benepia", "gafapay"}
    for name, entry in entries.items():
        assert entry["status"] == "ok"
        assert entry["cached"] is True
        assert entry["as_of"] == first[name]["as_of"]
    assert single.status_code == 200, single.text
    assert single.json()["cached"] is True
    assert set(balances(narrowed, complete=False)) == {"gafapay"}
    assert (point.call_count, gafa.call_count) == (1, 1)


async def test_store_down_serves_stale_entries_within_the_window(
    upstream: respx.MockRouter,
) -> None:
    mock_upstreams(upstream)
    store = SwitchableStore()
    app = app_with_store(upstream, cached_settings(ttl=0.1), store)
    async with serve_in_process(app) as client:
        first = balances(await client.get(ALICE))
        await asyncio.sleep(0.15)
        store.down = True
        entries = balances(await client.get(ALICE), complete=False)
    for name, entry in entries.items():
        assert entry["stale"] is True
        assert entry["as_of"] == first[name]["as_of"]


async def test_store_down_with_nothing_cached_is_503(upstream: respx.MockRouter) -> None:
    _, point, gafa = mock_upstreams(upstream)
    store = SwitchableStore()
    store.down = True
    async with serve_in_process(app_with_store(upstream, cached_settings(), store)) as client:
        merged = await client.get(ALICE)
        single = await client.get(ALICE_GAFAPAY_ROUTE)
    for r in (merged, single):
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "store_unavailable"
        assert int(r.headers["retry-after"]) >= 1
    assert (point.call_count, gafa.call_count) == (0, 0)


async def test_store_down_does_not_serve_another_users_cache(upstream: respx.MockRouter) -> None:
    mock_upstreams(upstream)
    store = SwitchableStore()
    async with serve_in_process(app_with_store(upstream, cached_settings(), store)) as client:
        balances(await client.get(ALICE))
        store.down = True
        r = await client.get("/users/carol/points")
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "store_unavailable"


async def test_unit_a_call_about_to_be_cut_off_is_not_joined() -> None:
    """A newcomer must not inherit the end of a call started under someone else's deadline."""
    now = [100.0]
    flights: SingleFlight[int] = SingleFlight(clock=lambda: now[0])
    gates = [asyncio.Event(), asyncio.Event()]
    started = 0

    async def call() -> int:
        nonlocal started
        started += 1
        mine = started
        await gates[mine - 1].wait()
        return mine

    first = asyncio.create_task(flights.do("k", call, ends_at=101.0))
    joined = asyncio.create_task(flights.do("k", call, ends_at=105.0))  # 1 s left: joins
    for _ in range(3):  # the callers, then the call they started
        await asyncio.sleep(0)
    assert started == 1
    now[0] = 100.98  # 20 ms left on the first call
    fresh = asyncio.create_task(flights.do("k", call, ends_at=105.0))
    for _ in range(3):
        await asyncio.sleep(0)
    assert started == 2
    gates[1].set()
    assert await fresh == 2
    gates[0].set()
    assert (await first, await joined) == (1, 1)
    assert flights.in_flight() == 0


async def test_unit_when_the_caller_running_the_call_is_cancelled_a_joiner_runs_its_own() -> None:
    flights: SingleFlight[int] = SingleFlight()
    started = 0
    gate = asyncio.Event()

    async def call() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        return started

    running = asyncio.create_task(flights.do("k", call))
    await asyncio.sleep(0)
    joined = asyncio.create_task(flights.do("k", call))
    await asyncio.sleep(0)
    assert started == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(3):
        await asyncio.sleep(0)
    assert started == 2, "the joiner started the call again rather than fail"
    gate.set()
    assert await joined == 2
    assert flights.in_flight() == 0


async def test_unit_a_joiner_waits_no_longer_than_its_own_deadline() -> None:
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def call() -> int:
        await gate.wait()
        return 1

    running = asyncio.create_task(flights.do("k", call, ends_at=time.monotonic() + 10))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await flights.do("k", call, ends_at=time.monotonic() + 0.05)
    assert not running.done(), "the joiner giving up left the call running"
    gate.set()
    assert await running == 1

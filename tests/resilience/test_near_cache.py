"""The cache when Redis stumbles (issue 18): one slow read is one failure, this process's copy
answers what Redis cannot, and a restarted Redis is used again within seconds, under load."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from redis.asyncio import Redis

from app.main import create_app
from app.resilience.cache import CachedBalance, MemoryBalanceCache, RedisBalanceCache
from app.resilience.near_cache import NearCache
from tests.conftest import make_settings, make_store, serve_in_process
from tests.resilience.conftest import PrivateRedis
from tests.resilience.test_cache_backends import (
    ALICE_GAFAPAY_PATH,
    CountingRedis,
    app_client,
    upstream_router,
)

KEY = "gafapay:alice"
GUARD = 5.0  # the bound for being back on Redis after a restart; also a hang guard


def value(points: str = "250.0") -> CachedBalance:
    return CachedBalance(Decimal(points), "u", datetime(2026, 12, 1, tzinfo=UTC), time.time())


def near_over(url: str) -> NearCache:
    return NearCache(MemoryBalanceCache(), RedisBalanceCache.from_url(url), keep_for=600)


async def test_one_slow_read_is_one_failure_not_a_bypass(private_redis: PrivateRedis) -> None:
    far = RedisBalanceCache.from_url(private_redis.url)  # 0.25 s socket timeout
    await far.set(KEY, value(), keep_for=60)
    blocker = Redis.from_url(private_redis.url, socket_timeout=5.0)
    try:
        await blocker.client_pause(600)  # every other client waits
        assert await far.read(KEY) == (None, False)  # timed out: a miss, counted once
        assert far.healthy is False
        await asyncio.sleep(0.7)
        # The very next read goes to Redis again (no skip window after one failure).
        assert await far.read(KEY) == (value_of(await far.get(KEY)), True)
        assert far.healthy is True
    finally:
        await blocker.aclose()
        await far.aclose()


def value_of(found: CachedBalance | None) -> CachedBalance:
    assert found is not None
    return found


async def test_the_near_copy_answers_while_redis_is_down_and_follows_redis_when_up(
    private_redis: PrivateRedis,
) -> None:
    cache = near_over(private_redis.url)
    try:
        await cache.set(KEY, value("250.0"), keep_for=60)
        await cache.set("benepia:alice", value("12000"), keep_for=60)
        # Up: Redis is the truth; a key gone there (expired, or dropped by another replica) is
        # gone here too.
        probe = Redis.from_url(private_redis.url, socket_timeout=2.0)
        await probe.delete("pg:bal:v1:benepia:alice")
        await probe.aclose()
        assert await cache.get("benepia:alice") is None

        private_redis.kill()
        # Down: every read fails, and this process's copy answers.
        for _ in range(5):
            found = await cache.get(KEY)
            assert found is not None
            assert found.points == Decimal("250.0")
        assert await cache.get("benepia:alice") is None
        assert cache.healthy is False
    finally:
        await cache.aclose()


async def test_stale_if_error_survives_redis_and_the_provider_failing_together(
    private_redis: PrivateRedis,
) -> None:
    router, route = upstream_router()
    settings = make_settings(redis_url=private_redis.url, cache={"ttl": 0.2, "stale_if_error": 600})
    app = create_app(
        settings, store=make_store(), transport=httpx.MockTransport(router.async_handler)
    )
    async with serve_in_process(app) as client:
        first = await client.get(ALICE_GAFAPAY_PATH)
        assert first.json()["cached"] is False
        private_redis.kill()
        await asyncio.sleep(0.3)  # past the TTL: the provider is asked again, and fails
        route.mock(return_value=httpx.Response(503))
        answers = [await client.get(ALICE_GAFAPAY_PATH) for _ in range(5)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["points"], body["cached"], body["stale"]) == ("250.0", True, True)
    assert route.call_count == 1 + 5  # asked each time, failed each time after the first


async def test_a_restarted_redis_is_used_again_within_seconds_under_load(
    private_redis: PrivateRedis,
) -> None:
    router, route = upstream_router()
    stop = asyncio.Event()
    statuses: list[int] = []
    async with app_client(router, cache=None, redis_url=private_redis.url) as client:

        async def load() -> None:
            while not stop.is_set():
                statuses.append((await client.get(ALICE_GAFAPAY_PATH)).status_code)
                await asyncio.sleep(0.005)

        workers = [asyncio.create_task(load()) for _ in range(8)]
        try:
            await asyncio.sleep(0.3)
            private_redis.kill()
            await asyncio.sleep(1.0)  # the replica skips Redis, on its own copy
            private_redis.start()
            restarted = time.monotonic()
            probe = Redis.from_url(private_redis.url, socket_timeout=2.0)
            try:
                # Back on Redis: this replica writes alice's balance there again.
                while not await probe.exists("pg:bal:v1:" + KEY):
                    assert time.monotonic() - restarted < GUARD, "not back on Redis in 5 s"
                    await asyncio.sleep(0.05)
            finally:
                await probe.aclose()
            readiness = (await client.get("/readyz")).json()
        finally:
            stop.set()
            await asyncio.gather(*workers)
    assert readiness["checks"]["cache"] == "ok"
    assert statuses
    assert set(statuses) == {200}, "no request failed across the restart"
    assert route.call_count >= 1


@pytest.mark.parametrize("failures", [1, 2])
async def test_fewer_failures_in_a_row_than_the_threshold_do_not_skip_redis(
    private_redis: PrivateRedis, failures: int
) -> None:
    redis = CountingRedis.from_url(private_redis.url, socket_timeout=0.25)
    assert isinstance(redis, CountingRedis)
    far = RedisBalanceCache(redis)
    try:
        private_redis.kill()
        for _ in range(failures):
            assert await far.read(KEY) == (None, False)
        private_redis.start()
        before = redis.commands
        assert await far.read(KEY) == (None, True)  # tried, and answered
        assert redis.commands == before + 1
    finally:
        await far.aclose()

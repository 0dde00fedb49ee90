"""The balance cache backends: one suite on process memory and on the real Redis.

Then the same backends under the app: hits skip the upstream, Redis is shared by every
instance, and a Redis that dies mid-traffic degrades the gateway instead of breaking it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
import respx
from redis.asyncio import Redis

from app.main import create_app
from app.resilience.cache import BalanceCache, CachedBalance, RedisBalanceCache
from tests.conftest import GAFAPAY_URL, make_settings, make_store, serve_in_process
from tests.conftest import gafapay_ok as gafapay_reply
from tests.resilience.conftest import REDIS_TIMEOUT, PrivateRedis, RedisCacheFactory
from tests.support.servers import closed_port

KST = timezone(timedelta(hours=9))
VALUE = CachedBalance(
    points=Decimal("250.0"),
    unit="gafapay:1f1519903ed240578f071aa45cb479f2",
    as_of=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=KST),
    stored_at=1_714_534_215.25,
)
CACHING = {"ttl": 30, "stale_if_error": 600}
ALICE_GAFAPAY_PATH = "/users/alice/points/gafapay"
# The key the fetcher uses for alice's GafaPay balance (app.points.fetcher.cache_key).
ALICE_GAFAPAY_KEY = "gafapay:alice"
WARNING = "serving without the shared cache"
RETRY_INTERVAL = 0.5
OUTAGE_REQUESTS = 20

# Values a different writer (an older format, another provider, a typo) could leave under a key.
FOREIGN_VALUES = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",
    b"null",
    b"[]",
    b'"250.0"',
    b"12000",
    b'{"points":"250.0","unit":"u","as_of":"2024-05-01T12:30:15+09:00"}',
    b'{"p":"250.0"}',
    b'{"p":"two hundred","u":"u","a":"2024-05-01T12:30:15+09:00","s":1}',
    b'{"p":"250.0","u":"u","a":"yesterday","s":1}',
    b'{"p":"250.0","u":"u","a":"2024-05-01T12:30:15+09:00","s":"later"}',
    b'{"p":["2","5","0"],"u":"u","a":"2024-05-01T12:30:15+09:00","s":1}',
    b'{"p":"NaN","u":"u","a":"2024-05-01T12:30:15+09:00","s":1}',
    b'{"p":"-Infinity","u":"u","a":"2024-05-01T12:30:15+09:00","s":1}',
    b'{"p":"250.0","u":"u","a":"2024-05-01T12:30:15","s":1}',  # as_of without a time zone
    b"[" * 100_000,
]

redis_only = pytest.mark.parametrize("cache_backend", ["redis"], indirect=True)


def upstream_router() -> tuple[respx.MockRouter, respx.Route]:
    """A respx router answering alice's GafaPay balance, and that route (to count calls)."""
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    route = router.get(GAFAPAY_URL).mock(side_effect=lambda _: gafapay_reply())
    return router, route


@asynccontextmanager
async def app_client(
    router: respx.MockRouter, *, cache: BalanceCache | None, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on `cache` (None: whatever open_cache makes of the settings), served in process."""
    app = create_app(
        make_settings(cache=CACHING, **settings),
        store=make_store(),
        cache=cache,
        transport=httpx.MockTransport(router.async_handler),
    )
    async with serve_in_process(app) as client:
        yield client


def balance_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "ok"
    assert body["points"] == "250.0"
    return body


# --- the backend contract, on both backends -----------------------------------------------------


async def test_get_of_an_absent_key_is_a_miss(cache_backend: BalanceCache) -> None:
    assert await cache_backend.get("gafapay:nobody") is None


async def test_set_then_get_round_trips_every_field(cache_backend: BalanceCache) -> None:
    await cache_backend.set("gafapay:alice", VALUE, keep_for=30)

    got = await cache_backend.get("gafapay:alice")

    assert got == VALUE
    assert got is not None
    assert str(got.points) == "250.0"  # the trailing zero is the provider's, and kept
    assert got.unit == VALUE.unit
    assert got.as_of == VALUE.as_of
    assert got.as_of.utcoffset() == timedelta(hours=9)
    assert got.stored_at == VALUE.stored_at


async def test_an_entry_expires_after_keep_for(cache_backend: BalanceCache) -> None:
    await cache_backend.set("gafapay:alice", VALUE, keep_for=0.2)
    await cache_backend.set("gafapay:bob", VALUE, keep_for=30)
    assert await cache_backend.get("gafapay:alice") == VALUE

    await asyncio.sleep(0.35)  # real time on both backends (Redis expires by its own clock)

    assert await cache_backend.get("gafapay:alice") is None
    assert await cache_backend.get("gafapay:bob") == VALUE


async def test_delete_drops_only_the_named_keys(cache_backend: BalanceCache) -> None:
    await cache_backend.set("gafapay:alice", VALUE, keep_for=30)
    await cache_backend.set("benepia:alice", VALUE, keep_for=30)

    await cache_backend.delete(["gafapay:alice", "gafapay:never-set"])
    await cache_backend.delete([])

    assert await cache_backend.get("gafapay:alice") is None
    assert await cache_backend.get("benepia:alice") == VALUE


async def test_a_reachable_backend_is_healthy(cache_backend: BalanceCache) -> None:
    await cache_backend.set("gafapay:alice", VALUE, keep_for=30)
    await cache_backend.get("gafapay:alice")

    assert cache_backend.healthy is True


def short_id(raw: bytes) -> str:
    text = raw[:32].decode("ascii", "backslashreplace")
    return text if len(raw) <= 32 else f"{text}...({len(raw)} bytes)"


@pytest.mark.parametrize("raw", FOREIGN_VALUES, ids=short_id)
def test_the_codec_reads_foreign_bytes_as_no_value(raw: bytes) -> None:
    assert CachedBalance.decode(raw) is None


def test_the_codec_round_trips() -> None:
    assert CachedBalance.decode(VALUE.encode()) == VALUE


@redis_only
async def test_a_foreign_value_under_a_key_is_a_miss_not_an_error(
    cache_backend: BalanceCache, shared_redis: Redis, redis_prefix: str
) -> None:
    for raw in FOREIGN_VALUES:
        await shared_redis.set(redis_prefix + "gafapay:alice", raw)

        assert await cache_backend.get("gafapay:alice") is None, raw

    assert cache_backend.healthy is True


@redis_only
async def test_a_foreign_value_is_refetched_through_the_app(
    cache_backend: BalanceCache, shared_redis: Redis, redis_prefix: str
) -> None:
    await shared_redis.set(redis_prefix + ALICE_GAFAPAY_KEY, b'{"p":"250.0"}')
    router, route = upstream_router()

    async with app_client(router, cache=cache_backend) as client:
        first = balance_of(await client.get(ALICE_GAFAPAY_PATH))
        second = balance_of(await client.get(ALICE_GAFAPAY_PATH))

    assert (first["cached"], second["cached"]) == (False, True)
    assert route.call_count == 1  # the foreign value was replaced by a real one


@redis_only
async def test_a_deeply_nested_foreign_value_is_a_miss(
    cache_backend: BalanceCache, shared_redis: Redis, redis_prefix: str
) -> None:
    await shared_redis.set(redis_prefix + ALICE_GAFAPAY_KEY, b"[" * 100_000)
    router, route = upstream_router()

    async with app_client(router, cache=cache_backend) as client:
        resp = await client.get(ALICE_GAFAPAY_PATH)

    balance_of(resp)
    assert route.call_count == 1


@redis_only
async def test_a_non_finite_foreign_value_is_a_miss(
    cache_backend: BalanceCache, shared_redis: Redis, redis_prefix: str
) -> None:
    foreign = CachedBalance(Decimal("NaN"), VALUE.unit, VALUE.as_of, time.time())
    await shared_redis.set(redis_prefix + ALICE_GAFAPAY_KEY, foreign.encode())
    router, route = upstream_router()

    async with app_client(router, cache=cache_backend) as client:
        resp = await client.get(ALICE_GAFAPAY_PATH)
        merged = await client.get("/users/alice/points", params={"providers": "gafapay"})

    assert balance_of(resp)["cached"] is False
    assert merged.status_code == 200, merged.text
    assert merged.json()["balances"][0]["cached"] is True  # the real value replaced it
    assert route.call_count == 1


@redis_only
async def test_a_foreign_type_under_a_key_does_not_take_the_cache_down(
    cache_backend: BalanceCache, shared_redis: Redis, redis_prefix: str
) -> None:
    await shared_redis.hset(redis_prefix + "gafapay:alice", mapping={"p": "250.0"})
    await cache_backend.set("gafapay:bob", VALUE, keep_for=30)

    assert await cache_backend.get("gafapay:alice") is None
    assert cache_backend.healthy is True
    assert await cache_backend.get("gafapay:bob") == VALUE


# --- through the app ------------------------------------------------------------------------------


async def test_a_second_get_is_a_cache_hit(cache_backend: BalanceCache) -> None:
    router, route = upstream_router()

    async with app_client(router, cache=cache_backend) as client:
        first = balance_of(await client.get(ALICE_GAFAPAY_PATH))
        second = balance_of(await client.get(ALICE_GAFAPAY_PATH))

    assert route.call_count == 1
    assert (first["cached"], first["stale"]) == (False, False)
    assert (second["cached"], second["stale"]) == (True, False)
    assert second["as_of"] == first["as_of"]
    assert second["unit"] == first["unit"]


async def test_instances_share_the_redis_cache(redis_caches: RedisCacheFactory) -> None:
    router_a, route_a = upstream_router()
    router_b, route_b = upstream_router()

    async with (
        app_client(router_a, cache=await redis_caches()) as instance_a,
        app_client(router_b, cache=await redis_caches()) as instance_b,
    ):
        from_a = balance_of(await instance_a.get(ALICE_GAFAPAY_PATH))
        from_b = balance_of(await instance_b.get(ALICE_GAFAPAY_PATH))

    assert route_a.call_count == 1
    assert route_b.call_count == 0
    assert from_a["cached"] is False
    assert from_b["cached"] is True
    assert from_b["as_of"] == from_a["as_of"]


class CountingRedis(Redis):
    """A Redis client that counts the commands the cache sends through it."""

    commands = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands += 1
        # redis-py leaves execute_command unannotated.
        execute = cast(Callable[..., Awaitable[Any]], super().execute_command)
        return await execute(*args, **options)


async def readiness(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "ready"
    return body


async def test_redis_killed_mid_traffic_degrades_then_recovers(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    redis = CountingRedis.from_url(
        private_redis.url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    assert isinstance(redis, CountingRedis)
    cache = RedisBalanceCache(redis, retry_interval=RETRY_INTERVAL)
    router, route = upstream_router()
    caplog.set_level(logging.WARNING, logger="points_gateway.cache")

    async with app_client(router, cache=cache) as client:
        # Up: the second request is a hit.
        assert balance_of(await client.get(ALICE_GAFAPAY_PATH))["cached"] is False
        assert balance_of(await client.get(ALICE_GAFAPAY_PATH))["cached"] is True
        assert (await readiness(client))["checks"]["cache"] == "ok"
        assert route.call_count == 1

        private_redis.kill()
        caplog.clear()

        # Down: the first request finds out, answers from upstream, and marks Redis down.
        started = time.monotonic()
        first = balance_of(await client.get(ALICE_GAFAPAY_PATH))
        assert first["cached"] is False
        assert cache.healthy is False
        assert (await readiness(client))["checks"]["cache"] == "degraded"

        statuses = [first["status"]]
        commands_before = redis.commands
        for _ in range(OUTAGE_REQUESTS - 1):
            during = balance_of(await client.get(ALICE_GAFAPAY_PATH))
            statuses.append(during["status"])
            assert during["cached"] is False
        elapsed = time.monotonic() - started
        outage_commands = redis.commands - commands_before

        warnings = [r for r in caplog.records if WARNING in r.getMessage()]
        assert statuses == ["ok"] * OUTAGE_REQUESTS
        assert route.call_count == 1 + OUTAGE_REQUESTS  # every answer fresh from upstream
        # The first request's read and write failed; the next failure in a row (the second
        # request's read) skips Redis. While skipped it is tried again only once per retry
        # interval, and each such try logs the warning once.
        assert elapsed < 4.0, f"{OUTAGE_REQUESTS} requests took {elapsed:.2f} s"
        assert 1 <= len(warnings) <= 1 + int(elapsed / RETRY_INTERVAL)
        assert outage_commands <= 1 + int(elapsed / RETRY_INTERVAL)
        assert outage_commands < OUTAGE_REQUESTS - 1
        gaps = [b.created - a.created for a, b in itertools.pairwise(warnings)]
        assert all(gap >= RETRY_INTERVAL * 0.9 for gap in gaps), gaps

        # Back: after the retry interval the next command reaches Redis and the cache is used
        # again (the balance written before the outage expired with the restart).
        private_redis.start()
        await asyncio.sleep(RETRY_INTERVAL + 0.1)
        calls = route.call_count
        assert balance_of(await client.get(ALICE_GAFAPAY_PATH))["cached"] is False
        assert cache.healthy is True
        assert (await readiness(client))["checks"]["cache"] == "ok"
        assert balance_of(await client.get(ALICE_GAFAPAY_PATH))["cached"] is True
        assert route.call_count == calls + 1

    probe = Redis.from_url(private_redis.url, socket_timeout=2.0)
    try:
        assert await probe.exists("pg:bal:v1:" + ALICE_GAFAPAY_KEY) == 1
    finally:
        await probe.aclose()


async def test_a_redis_url_on_a_closed_port_still_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, route = upstream_router()
    caplog.set_level(logging.WARNING, logger="points_gateway.cache")
    url = f"redis://127.0.0.1:{closed_port()}/0"

    started = time.monotonic()
    async with app_client(router, cache=None, redis_url=url) as client:
        first = balance_of(await client.get(ALICE_GAFAPAY_PATH))
        body = await readiness(client)
        second = balance_of(await client.get(ALICE_GAFAPAY_PATH))
    elapsed = time.monotonic() - started

    assert body["checks"] == {"store": "ok", "cache": "degraded"}
    # Redis never answered; this process's own copy (the near tier) answered the second.
    assert (first["cached"], second["cached"]) == (False, True)
    assert route.call_count == 1
    assert elapsed < 3.0
    assert [r.getMessage() for r in caplog.records if WARNING in r.getMessage()] == [
        f"redis read failed (ConnectionError); {WARNING}"
    ]

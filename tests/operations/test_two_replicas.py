"""Two `points-gateway serve` replicas share PostgreSQL and Redis: a link or a cached balance made
through one is served by the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from app.sandbox.demo import DEMO_ACCOUNTS
from tests.conftest import require_services
from tests.operations.conftest import parse_metrics, sample
from tests.support.processes import (
    KEY,
    Sandboxes,
    db_upgrade,
    gateway_env,
    running_sandboxes,
    serve_process,
    stop,
)

pytestmark = pytest.mark.integration

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
CACHE_PREFIX = "pg:bal:v1:"


def _unavailable(reason: str) -> None:
    if require_services():
        pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


async def _admin(statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_async_engine(
        f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT", connect_args={"timeout": 5}
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own on the real PostgreSQL (dropped after): its async URL."""
    name = f"points_ops_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as exc:
        _unavailable(f"PostgreSQL at 127.0.0.1:5432 is not usable ({type(exc).__name__})")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        _unavailable(f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__})")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with running_sandboxes() as running:
        yield running


def test_a_link_and_a_cached_balance_made_on_one_replica_are_served_by_the_other(
    sandboxes: Sandboxes, database: str, redis: Redis, tmp_path: Path
) -> None:
    env = {
        **gateway_env(sandboxes.urls, tmp_path, KEY),
        "POINTS_DATABASE_URL": database,
        "POINTS_REDIS_URL": REDIS_URL,
        "POINTS_CACHE__TTL": "60",
    }
    db_upgrade(env, tmp_path)
    user = f"ops-{uuid.uuid4().hex}"  # its own key space in the shared Redis
    path = f"/users/{user}/points/gafapay"
    sandboxes.gafapay.reset()
    try:
        with (
            serve_process(env, tmp_path, "replica-a") as a,
            serve_process(env, tmp_path, "replica-b") as b,
            httpx.Client(base_url=a.base_url, timeout=10.0) as on_a,
            httpx.Client(base_url=b.base_url, timeout=10.0) as on_b,
        ):
            assert a.base_url != b.base_url
            linked = on_a.put(
                f"/users/{user}/accounts/gafapay", json=DEMO_ACCOUNTS["alice"]["gafapay"]
            )
            listed_on_b = on_b.get(f"/users/{user}/accounts")
            fetched_on_a = on_a.get(path)
            calls_after_a = sandboxes.gafapay.points_calls
            served_by_b = on_b.get(path)
            calls_after_b = sandboxes.gafapay.points_calls
            b_metrics = parse_metrics(on_b.get("/metrics").text)
            for replica in (a, b):
                stop(replica)
    finally:
        redis.delete(f"{CACHE_PREFIX}gafapay:{user}")

    assert linked.status_code == 201, linked.text
    assert listed_on_b.status_code == 200, listed_on_b.text
    assert [acc["provider"] for acc in listed_on_b.json()["accounts"]] == ["gafapay"]

    assert fetched_on_a.status_code == 200, fetched_on_a.text
    assert fetched_on_a.json()["cached"] is False
    assert calls_after_a == 1

    assert served_by_b.status_code == 200, served_by_b.text
    assert served_by_b.json()["cached"] is True
    assert served_by_b.json()["points"] == fetched_on_a.json()["points"] == "250.0"
    assert served_by_b.json()["as_of"] == fetched_on_a.json()["as_of"]
    assert calls_after_b == calls_after_a, "replica B asked GafaPay instead of the shared cache"
    assert sample(b_metrics, "points_cache_hits_total", provider="gafapay") == 1
    b_calls = sample(b_metrics, "points_upstream_calls_total", provider="gafapay", outcome="ok")
    assert b_calls is None


def test_a_link_relink_and_unlink_on_one_replica_reach_the_others_account_cache(
    sandboxes: Sandboxes, database: str, tmp_path: Path
) -> None:
    """Each replica holds accounts (and balances, without Redis) in process; PostgreSQL's
    notifications drop them on every replica when one of them changes an account."""
    env = {
        **gateway_env(sandboxes.urls, tmp_path, KEY),
        "POINTS_DATABASE_URL": database,
        "POINTS_CACHE__TTL": "60",
    }
    db_upgrade(env, tmp_path)
    user = f"ops-{uuid.uuid4().hex}"
    path = f"/users/{user}/points/gafapay"
    account = f"/users/{user}/accounts/gafapay"
    with (
        serve_process(env, tmp_path, "replica-a") as a,
        serve_process(env, tmp_path, "replica-b") as b,
        httpx.Client(base_url=a.base_url, timeout=10.0) as on_a,
        httpx.Client(base_url=b.base_url, timeout=10.0) as on_b,
    ):
        wait_listening(on_b)
        assert on_b.get(path).status_code == 404  # B now holds "nothing linked"

        assert on_a.put(account, json=DEMO_ACCOUNTS["alice"]["gafapay"]).status_code == 201
        linked = until(on_b, path, lambda r: r.status_code == 200)
        assert linked.json()["points"] == "250.0"
        assert on_b.get(path).json()["cached"] is True  # B's own balance cache (no Redis)

        # Re-linked to another GafaPay account: B must not answer the old account's balance.
        assert on_a.put(account, json=DEMO_ACCOUNTS["bob"]["gafapay"]).status_code == 200
        relinked = until(on_b, path, lambda r: r.json().get("points") == "1234.56")
        assert relinked.status_code == 200

        assert on_a.delete(account).status_code == 204
        unlinked = until(on_b, path, lambda r: r.status_code == 404)
        assert unlinked.json()["code"] == "account_not_linked"

        lag = parse_metrics(on_b.get("/metrics").text)
        for replica in (a, b):
            stop(replica)
    assert (sample(lag, "points_account_change_lag_seconds_count") or 0) >= 3


GUARD = 5.0  # a hang guard, not a timing assertion


def until(
    client: httpx.Client, path: str, done: Callable[[httpx.Response], bool]
) -> httpx.Response:
    """GET `path` until `done` says so (bounded)."""
    deadline = time.monotonic() + GUARD
    while True:
        response = client.get(path)
        if done(response) or time.monotonic() > deadline:
            assert done(response), response.text
            return response
        time.sleep(0.005)


def wait_listening(client: httpx.Client) -> None:
    """Until the replica's account change listener is up and its account cache serving."""
    until(client, "/readyz", lambda r: r.json()["checks"].get("account_cache") == "ok")


def test_readyz_says_the_account_cache_is_degraded_while_its_listener_is_gone(
    sandboxes: Sandboxes, database: str, tmp_path: Path
) -> None:
    """The served process: its listener's connection killed, the cache is off (degraded, still
    ready: lookups go to the database) until the listener is back."""
    env = {**gateway_env(sandboxes.urls, tmp_path, KEY), "POINTS_DATABASE_URL": database}
    db_upgrade(env, tmp_path)
    with (
        serve_process(env, tmp_path, "replica") as replica,
        httpx.Client(base_url=replica.base_url, timeout=10.0) as client,
    ):
        wait_listening(client)
        name = database.rsplit("/", 1)[1]  # the fixture's own points_ops_<hex>, not input
        kill = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "  # noqa: S608
            f"'points-gateway listener' AND datname = '{name}'"
        )
        asyncio.run(_admin(kill))
        degraded = until(
            client, "/readyz", lambda r: r.json()["checks"].get("account_cache") == "degraded"
        )
        assert degraded.status_code == 200, "degraded, not unready: lookups read the database"
        wait_listening(client)
        stop(replica)

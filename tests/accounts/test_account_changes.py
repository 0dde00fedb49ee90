"""PostgreSQL tells every process when a linked account changes (migrations 0003, 0004), and the
account cache serves only while it listens. Real PostgreSQL, a schema per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.account_cache import AccountCache
from app.accounts.change_feed import (
    APPLICATION_NAME,
    CHANNEL,
    AccountChange,
    AccountChangeFeed,
    open_change_feed,
)
from app.accounts.engine import build_engine
from app.accounts.lookups import Lookups, Row, open_lookups
from app.accounts.migrate import MIGRATIONS, upgrade
from app.accounts.rotation import rotate
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.providers.base import Ownership
from app.providers.benepia import BenepiaAccount
from tests.accounts.conftest import KEY_A, KEY_B, PG_URL, PLUGINS, pg_schema

GUARD = 5.0  # a hang guard, not a timing assertion
PG_DSN = PG_URL.replace("postgresql+asyncpg://", "postgresql://")


class CountingLookups:
    """The real lookups, counted."""

    def __init__(self, inner: Lookups) -> None:
        self.inner = inner
        self.count = 0

    async def linked(self, user_id: str) -> Sequence[Row]:
        self.count += 1
        return await self.inner.linked(user_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


def benepia(user: str = "alice.kim") -> BenepiaAccount:
    return BenepiaAccount.model_validate({"benepia_user": user, "benepia_password": "pw-123456"})


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A schema migrated to the head (with migration 0003's triggers)."""
    async with pg_schema() as name:
        migrating = build_engine(PG_URL, timeout=5.0, pg_schema=name)
        await upgrade(migrating)
        await migrating.dispose()
        yield name


class Stores:
    """Two stores on one schema: `cached` (listening, with the cache) and `other` (a writer)."""

    def __init__(self, schema: str) -> None:
        self.engine: AsyncEngine = build_engine(PG_URL, timeout=5.0, pg_schema=schema)
        self.lookups = CountingLookups(open_lookups(PG_URL, timeout=5.0, pg_schema=schema))
        assert isinstance(open_change_feed(PG_URL, timeout=5.0), AccountChangeFeed)
        # A second's pause before reconnecting: the outage is long enough to look at.
        self.feed = feed = AccountChangeFeed(
            PG_DSN, timeout=5.0, server_settings={"search_path": schema}, reconnect_first=1.0
        )
        self.cache = AccountCache(max_entries=100, ttl=300)
        self.cached = SqlAccountStore(
            self.engine,
            Keyring.parse(KEY_A),
            PLUGINS,
            timeout=5.0,
            lookups=self.lookups,
            changes=feed,
            cache=self.cache,
        )
        self.other_engine = build_engine(PG_URL, timeout=5.0, pg_schema=schema)
        self.other = SqlAccountStore(self.other_engine, Keyring.parse(KEY_A), PLUGINS, timeout=5.0)
        self.changes: list[AccountChange] = []

    async def listen(self) -> None:
        self.cached.watch(self.changes.append)
        await asyncio.wait_for(self.feed.listening.wait(), GUARD)

    async def link(self, store: SqlAccountStore, user: str = "alice") -> None:
        await store.upsert(
            user, "benepia", benepia(), masked_id="al****im", ownership=Ownership.SECRET
        )

    async def until(self, check: Any) -> None:
        async with asyncio.timeout(GUARD):
            while not await check():
                await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        await self.cached.aclose()
        await self.other.aclose()


@pytest.fixture
async def stores(schema: str) -> AsyncIterator[Stores]:
    built = Stores(schema)
    try:
        yield built
    finally:
        await built.aclose()


async def notifications(schema: str, action: Any) -> list[str]:
    """The payloads sent on the channel while `action` runs (and shortly after)."""
    got: list[str] = []
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.add_listener(CHANNEL, lambda *args: got.append(args[3]))
        await action()
        await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return got


async def test_every_write_a_lookup_reads_is_notified_and_fetch_notes_are_not(
    stores: Stores, schema: str
) -> None:
    async def writes() -> None:
        await stores.link(stores.other)  # link
        await stores.link(stores.other)  # relink
        async with stores.other_engine.begin() as conn:  # a fetch note: nobody cares
            await conn.execute(update(t).values(last_fetch_at=text("now()")))
        await stores.other.delete("alice", "benepia")  # unlink

    sent = [p.split(" ") for p in await notifications(schema, writes)]
    assert [(p[0], p[1], p[3]) for p in sent] == [("benepia", "alice", "changed")] * 3
    assert all(float(p[2]) > 0 for p in sent)


async def test_a_key_rotation_notifies_nobody_and_cached_accounts_stay(
    stores: Stores, schema: str
) -> None:
    """A re-seal keeps the credentials (migration 0004): replicas keep what they opened."""
    await stores.link(stores.other)
    await stores.link(stores.other, "bob")
    await stores.listen()
    cached = await stores.cached.linked("alice")
    rotated_keys = Keyring.parse(f"{KEY_B},{KEY_A}")

    async def rotation() -> None:
        report = await rotate(stores.other_engine, rotated_keys, batch=1)
        assert report.resealed == 2

    assert await notifications(schema, rotation) == []
    assert await stores.cached.linked("alice") is cached
    assert stores.lookups.count == 1

    async def relink() -> None:
        await stores.link(stores.other)

    sent = await notifications(schema, relink)
    assert [p.split(" ")[3] for p in sent] == ["changed"], "other writes still notify"


async def test_before_migration_0004_each_reseal_was_notified(stores: Stores, schema: str) -> None:
    """Downgrading puts 0003's trigger back: the re-seals are notified as `resealed` again."""
    await stores.link(stores.other)

    def downgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")

    async with stores.other_engine.begin() as conn:
        await conn.run_sync(downgrade)

    async def rotation() -> None:
        assert (await rotate(stores.other_engine, Keyring.parse(f"{KEY_B},{KEY_A}"))).resealed == 1

    sent = await notifications(schema, rotation)
    assert [p.split(" ")[3] for p in sent] == ["resealed"]


async def test_a_hand_run_update_marked_resealed_that_moves_a_row_still_notifies(
    stores: Stores, schema: str
) -> None:
    await stores.link(stores.other)

    async def move() -> None:
        async with stores.other_engine.begin() as conn:
            await conn.execute(text("SET LOCAL points.change = 'resealed'"))
            await conn.execute(update(t).values(user_id="alice2"))

    sent = [p.split(" ") for p in await notifications(schema, move)]
    assert sorted(p[1] for p in sent) == ["alice", "alice2"]


async def test_lookups_are_served_from_the_cache_only_while_listening(stores: Stores) -> None:
    await stores.link(stores.other)
    await stores.cached.linked("alice")
    await stores.cached.linked("alice")
    assert stores.lookups.count == 2, "not listening yet: every lookup reads the database"

    await stores.listen()
    first = await stores.cached.linked("alice")
    second = await stores.cached.linked("alice")
    assert stores.lookups.count == 3
    assert second is first
    assert isinstance(first["benepia"], BenepiaAccount)


async def test_a_change_made_elsewhere_reaches_the_cache(stores: Stores) -> None:
    await stores.link(stores.other)
    await stores.listen()
    assert "benepia" in await stores.cached.linked("alice")

    await stores.other.delete("alice", "benepia")

    async def unlinked() -> bool:
        return "benepia" not in await stores.cached.linked("alice")

    await stores.until(unlinked)
    (change,) = [c for c in stores.changes if c.user_id == "alice"]
    assert (change.provider, change.kind) == ("benepia", "changed")
    assert change.lag is not None
    assert change.lag < GUARD


async def test_a_write_of_this_process_is_seen_at_once(stores: Stores) -> None:
    await stores.listen()
    assert await stores.cached.linked("alice") == {}
    await stores.link(stores.cached)
    assert "benepia" in await stores.cached.linked("alice"), "no wait for the notification"


async def test_a_dropped_listener_turns_the_cache_off_until_it_is_back(stores: Stores) -> None:
    await stores.link(stores.other)
    await stores.listen()
    await stores.cached.linked("alice")
    assert len(stores.cache) == 1

    admin = await asyncpg.connect(PG_DSN)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            APPLICATION_NAME,
        )
    finally:
        await admin.close()
    assert killed >= 1

    async def stopped() -> bool:
        return not stores.cache.active

    await stores.until(stopped)
    assert len(stores.cache) == 0
    await stores.other.delete("alice", "benepia")  # maybe while nobody listens
    before = stores.lookups.count
    await stores.cached.linked("alice")
    await stores.cached.linked("alice")
    assert stores.lookups.count == before + 2, "off: every lookup reads the database"

    await asyncio.wait_for(stores.feed.listening.wait(), GUARD)
    assert "benepia" not in await stores.cached.linked("alice")
    assert stores.cache.active
    count = stores.lookups.count
    await stores.cached.linked("alice")
    assert stores.lookups.count == count, "back on: served from the cache again"

"""The durable account store: SQLAlchemy async over SQLite or PostgreSQL, credentials sealed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import MappingProxyType

from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.account_cache import AccountCache
from app.accounts.change_feed import AccountChange, AccountChangeFeed
from app.accounts.lookups import STORE_ERRORS, EngineLookups, Lookups
from app.accounts.ownership import admit_unrecorded
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.store import AccountInfo, LinkedAccount, reveal
from app.errors import ConfigurationError, CredentialsUnreadable, GatewayError, StoreUnavailable
from app.providers.base import Ownership, ProviderPlugin

log = logging.getLogger("points_gateway.accounts")
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    *STORE_ERRORS,
    OSError,
    TimeoutError,
)
_NOTE_FETCH = (
    update(t)
    .where(and_(t.c.user_id == bindparam("u"), t.c.provider == bindparam("p")))
    .values(last_fetch_at=bindparam("at"))
)
# Built once: building and coercing a statement per request costs more than running it.
_INFO = (t.c.provider, t.c.masked_id, t.c.linked_at, t.c.updated_at, t.c.last_fetch_at)
_ACCOUNTS = select(*_INFO).where(t.c.user_id == bindparam("user_id")).order_by(t.c.provider)
FETCH_NOTE_INTERVAL = 60.0
FETCH_NOTE_DELAY = 0.5  # how long notes of fetches gather before one write records them all
BACKSTOP = 1.0


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _info(
    provider: str,
    masked_id: str,
    linked_at: datetime,
    updated_at: datetime,
    last_fetch_at: datetime | None,
) -> AccountInfo:
    return AccountInfo(
        provider, masked_id, _aware(linked_at), _aware(updated_at), _utc(last_fetch_at)
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every value we write is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def link_statement(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    """The upsert of a link (or a bulk import): a relink replaces the credentials and the
    ownership and keeps `linked_at` and `last_fetch_at`."""
    insert: postgresql.Insert | sqlite.Insert = (
        postgresql.insert(t) if dialect_name == "postgresql" else sqlite.insert(t)
    )
    # One atomic statement: concurrent links of the same account collapse into one row.
    return insert.on_conflict_do_update(
        index_elements=[t.c.user_id, t.c.provider],
        set_={
            "masked_id": insert.excluded.masked_id,
            "sealed": insert.excluded.sealed,
            "key_id": insert.excluded.key_id,
            "updated_at": insert.excluded.updated_at,
            "ownership": insert.excluded.ownership,
        },
    )


class SqlAccountStore:
    """Linked accounts in one table; each credential sealed to its (user, provider) row."""

    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        plugins: Mapping[str, ProviderPlugin],
        *,
        timeout: float,
        lookups: Lookups | None = None,
        fetch_note_delay: float = FETCH_NOTE_DELAY,
        changes: AccountChangeFeed | None = None,
        cache: AccountCache | None = None,
    ) -> None:
        self._engine = engine
        self._lookups = lookups or EngineLookups(engine, owned=False)
        self._keyring = keyring
        self._plugins = dict(plugins)
        self._timeout = timeout
        self._noted: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._pending: dict[tuple[str, str], datetime] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._note_delay = fetch_note_delay
        # The cache serves only while the change feed listens (app/accounts/account_cache.py).
        self._changes = changes
        self._cache = cache if changes is not None else None

    @asynccontextmanager
    async def _db(self, what: str) -> AsyncIterator[None]:
        try:
            # The drivers time out first (busy_timeout, command_timeout); cancelling a statement
            # mid-flight is only the backstop, since a cancelled SQLite call can outlive us.
            async with asyncio.timeout(self._timeout + BACKSTOP):
                yield
        except _UNAVAILABLE as exc:
            log.warning("account store unavailable during %s: %s", what, type(exc).__name__)
            raise StoreUnavailable(
                "The account store did not answer; try again shortly.", retry_after=2
            ) from exc

    async def check_ready(self) -> None:
        """Fail fast when the schema is missing or rows are sealed under keys we do not hold."""
        async with self._db("start-up check"), self._engine.connect() as conn:
            key_ids = (await conn.execute(select(t.c.key_id).distinct())).scalars().all()
        missing = sorted(set(key_ids) - set(self._keyring.keys))
        if missing:
            raise ConfigurationError(
                f"stored credentials are sealed under key(s) {', '.join(missing)} that "
                "POINTS_SECRET_KEYS does not hold; add them (the current key first)"
            )

    async def linked(self, user_id: str) -> Mapping[str, LinkedAccount]:
        cache = self._cache
        epoch = 0
        if cache is not None:
            held = cache.get(user_id)
            if held is not None:
                return held
            epoch = cache.epoch
        async with self._db("lookup"):
            rows = await self._lookups.linked(user_id)
        found: dict[str, LinkedAccount] = {}
        for provider, sealed, ownership in rows:
            plugin = self._plugins.get(provider)
            if plugin is not None:
                found[provider] = self._open(user_id, plugin, sealed, ownership)
        if cache is not None:
            linked = MappingProxyType(found)  # shared by every request that reads it
            cache.put(user_id, linked, epoch)
            return linked
        return found

    @property
    def account_cache_active(self) -> bool | None:
        """Whether lookups are answered from the account cache (its listener is up)."""
        return None if self._cache is None else self._cache.active

    def watch(self, on_change: Callable[[AccountChange], None]) -> None:
        """Follow changes made by any process (PostgreSQL); the account cache serves from now."""
        if self._changes is None or self._cache is None:
            return
        cache = self._cache

        def changed(change: AccountChange) -> None:
            cache.invalidate(change.user_id)
            on_change(change)

        self._changes.start(on_change=changed, on_reset=cache.resume, on_lost=cache.suspend)

    def _open(
        self, user_id: str, plugin: ProviderPlugin, sealed: str, ownership: str | None
    ) -> LinkedAccount:
        provider = plugin.name
        try:
            plain = self._keyring.unseal(sealed, user_id=user_id, provider=provider)
            account = plugin.account_model.model_validate_json(plain)
        except GatewayError as exc:
            log.warning("unreadable credentials for a %s account", provider)
            exc.provider = provider
            return exc
        except ValidationError:
            return CredentialsUnreadable(
                "The stored credentials no longer fit this provider's account schema.",
                provider=provider,
            )
        if ownership is None:
            return admit_unrecorded(plugin, account) or account
        return account

    def _changed(self, user_id: str) -> None:
        # This process's own write: its next lookup must not wait for the notification.
        if self._cache is not None:
            self._cache.invalidate(user_id)

    async def accounts(self, user_id: str) -> list[AccountInfo]:
        async with self._db("list"), self._engine.connect() as conn:
            rows = (await conn.execute(_ACCOUNTS, {"user_id": user_id})).all()
        return [_info(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def upsert(
        self,
        user_id: str,
        provider: str,
        account: BaseModel,
        *,
        masked_id: str,
        ownership: Ownership,
    ) -> tuple[AccountInfo, bool]:
        now = datetime.now(UTC)
        sealed = self._keyring.seal(reveal(account), user_id=user_id, provider=provider)
        values = {
            "user_id": user_id,
            "provider": provider,
            "masked_id": masked_id,
            "sealed": sealed,
            "key_id": self._keyring.current_id,
            "linked_at": now,
            "updated_at": now,
            "ownership": ownership.value,
        }
        statement = link_statement(self._engine.dialect.name).values(values).returning(*_INFO)
        try:
            async with self._db("link"), self._engine.begin() as conn:
                row = (await conn.execute(statement)).one()
        finally:
            self._changed(user_id)  # whatever happened: the notification may be on its way
        info = _info(*row)
        return info, info.linked_at == now

    async def delete(self, user_id: str, provider: str) -> bool:
        statement = delete(t).where(and_(t.c.user_id == user_id, t.c.provider == provider))
        try:
            async with self._db("unlink"), self._engine.begin() as conn:
                result = await conn.execute(statement)
        finally:
            self._changed(user_id)
        self._noted.pop((user_id, provider), None)
        self._pending.pop((user_id, provider), None)
        return bool(result.rowcount)

    def note_fetched(self, user_id: str, providers: Sequence[str]) -> None:
        now = time.monotonic()
        due = [
            p
            for p in providers
            if now - self._noted.get((user_id, p), -FETCH_NOTE_INTERVAL) >= FETCH_NOTE_INTERVAL
        ]
        if not due:
            return
        if len(self._noted) > 100_000:
            self._noted.clear()  # a throttle, not a record: forgetting only costs a write
        at = datetime.now(UTC)
        for provider in due:
            self._noted[(user_id, provider)] = now
            self._pending[(user_id, provider)] = at
        # Batched: one write per flush for every account noted meanwhile. One transaction per
        # fetch cost more CPU than the fetch itself once traffic spread over many users.
        if self._flusher is None:
            task = asyncio.get_running_loop().create_task(self._flush_later())
            self._flusher = task
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._note_delay)
        self._flusher = None  # notes from now on start the next flush
        await self._flush_fetched()

    async def _flush_fetched(self) -> None:
        batch, self._pending = self._pending, {}
        if not batch:
            return
        rows = [{"u": user, "p": provider, "at": at} for (user, provider), at in batch.items()]
        try:
            async with self._db("note fetch"), self._engine.begin() as conn:
                await conn.execute(_NOTE_FETCH, rows)
        except StoreUnavailable:
            pass  # a best-effort fact; the next successful fetch writes it again

    async def ping(self) -> None:
        async with self._db("ping"), self._engine.connect() as conn:
            await conn.execute(select(1))

    async def count(self) -> int:
        """How many accounts are linked (for rotation progress and tests)."""
        async with self._db("count"), self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t))).scalar_one())

    async def aclose(self) -> None:
        if self._changes is not None:
            await self._changes.aclose()
        if self._flusher is not None:
            self._flusher.cancel()  # no need to wait out its delay: flushed just below
            self._flusher = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._flush_fetched()
        await self._engine.dispose()
        await self._lookups.aclose()

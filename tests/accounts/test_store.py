"""The SQL account store, on SQLite and on the real PostgreSQL: the same tests, the same code."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.accounts.engine import build_engine
from app.accounts.lookups import AsyncpgLookups
from app.accounts.migrate import schema_state, upgrade
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.accounts.store import AccountInfo, LinkedAccount
from app.errors import ConfigurationError, CredentialsUnreadable, StoreUnavailable
from app.providers.benepia import BenepiaAccount
from app.providers.benepia import plugin as benepia_plugin
from app.providers.gafapay import GafapayAccount
from app.providers.gafapay import plugin as gafapay_plugin
from tests.accounts.conftest import (
    _LOOKUPS,
    KEY_A,
    KEY_B,
    PG_URL,
    PLUGINS,
    StoreFactory,
)

PASSWORD = "sEcReT-store-pw-0101"
GAFA_TOKEN = "eyJ.sEcReT-store-token.0202"
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
ALICE_GAFAPAY = "fb8f09210e0f46b7b4262d77f5b6c273"


def benepia(user: str = "alice.kim", password: str = PASSWORD) -> BenepiaAccount:
    return BenepiaAccount(benepia_user=user, benepia_password=SecretStr(password))


def gafapay(user_id: str = ALICE_GAFAPAY, token: str | None = GAFA_TOKEN) -> GafapayAccount:
    return GafapayAccount(
        gafapay_user_id=user_id,
        currency_id=CURRENCY,
        token=None if token is None else SecretStr(token),
    )


def masked(provider: str, account: BaseModel) -> str:
    plugin = benepia_plugin if provider == "benepia" else gafapay_plugin
    return plugin.masked_id(account)


async def link(
    store: SqlAccountStore, user_id: str, provider: str, account: BaseModel
) -> tuple[AccountInfo, bool]:
    plugin = benepia_plugin if provider == "benepia" else gafapay_plugin
    return await store.upsert(
        user_id,
        provider,
        account,
        masked_id=masked(provider, account),
        ownership=plugin.prove(account).kind,
    )


async def sealed_of(engine: AsyncEngine, user_id: str, provider: str) -> str:
    query = select(t.c.sealed).where(t.c.user_id == user_id, t.c.provider == provider)
    async with engine.connect() as conn:
        return str((await conn.execute(query)).scalar_one())


async def set_sealed(engine: AsyncEngine, user_id: str, provider: str, sealed: str) -> None:
    statement = (
        update(t).where(t.c.user_id == user_id, t.c.provider == provider).values(sealed=sealed)
    )
    async with engine.begin() as conn:
        assert (await conn.execute(statement)).rowcount == 1


async def row_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t))).scalar_one())


async def raw_rows(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(select(t))).all()]


def flip_middle(token: str) -> str:
    """The token with one character in the middle of its ciphertext changed."""
    head, _, sealed = token.rpartition(".")
    i = len(sealed) // 2
    return f"{head}.{sealed[:i]}{'B' if sealed[i] == 'A' else 'A'}{sealed[i + 1 :]}"


def benepia_of(found: LinkedAccount) -> BenepiaAccount:
    assert isinstance(found, BenepiaAccount), repr(found)
    return found


def gafapay_of(found: LinkedAccount) -> GafapayAccount:
    assert isinstance(found, GafapayAccount), repr(found)
    return found


def unreadable(found: LinkedAccount, provider: str) -> CredentialsUnreadable:
    assert isinstance(found, CredentialsUnreadable), repr(found)
    assert found.provider == provider
    assert found.code == "credentials_unreadable"
    return found


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 3.0) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- Linking, listing, reading, unlinking ------------------------------------------------------


async def test_upsert_creates_then_replaces_keeping_linked_at(make_sql_store: StoreFactory) -> None:
    store = make_sql_store()
    before = datetime.now(UTC)
    info, created = await link(store, "alice", "benepia", benepia())
    assert created is True
    assert info.provider == "benepia"
    assert info.masked_id == "al****im"
    assert info.linked_at == info.updated_at
    assert info.linked_at.tzinfo is not None
    assert before <= info.linked_at <= datetime.now(UTC)
    assert info.last_fetch_at is None

    await asyncio.sleep(0.01)
    again, created_again = await link(store, "alice", "benepia", benepia("alice.park", "pw-2"))
    assert created_again is False
    assert again.linked_at == info.linked_at
    assert again.updated_at > info.updated_at
    assert again.masked_id == "al****rk"
    assert await store.accounts("alice") == [again]
    assert benepia_of((await store.linked("alice"))["benepia"]).benepia_user == "alice.park"
    assert await store.count() == 1


async def test_accounts_are_masked_in_provider_order_and_never_secret(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "gafapay", gafapay())
    await link(store, "alice", "benepia", benepia())
    infos = await store.accounts("alice")
    assert [i.provider for i in infos] == ["benepia", "gafapay"]
    assert [i.masked_id for i in infos] == ["al****im", "fb8f****c273"]
    assert PASSWORD not in repr(infos)
    assert GAFA_TOKEN not in repr(infos)

    rows = await raw_rows(engine)
    assert len(rows) == 2
    for row in rows:
        flat = repr(row)
        for secret in (PASSWORD, GAFA_TOKEN, "sEcReT", "alice.kim", ALICE_GAFAPAY):
            assert secret not in flat
    for provider in ("benepia", "gafapay"):
        sealed = await sealed_of(engine, "alice", provider)
        assert sealed.startswith("v1.key-a.")
        assert Keyring.key_id_of(sealed) == "key-a"
    async with engine.connect() as conn:
        key_ids = (await conn.execute(select(t.c.key_id))).scalars().all()
    assert set(key_ids) == {"key-a"}


async def test_linked_returns_the_validated_accounts_that_were_stored(
    make_sql_store: StoreFactory,
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    await link(store, "bob", "gafapay", gafapay("0b0b", token=None))

    alice = await store.linked("alice")
    assert set(alice) == {"benepia", "gafapay"}
    found_benepia = benepia_of(alice["benepia"])
    assert found_benepia == benepia()
    assert found_benepia.benepia_user == "alice.kim"
    assert found_benepia.benepia_password.get_secret_value() == PASSWORD
    found_gafapay = alice["gafapay"]
    assert isinstance(found_gafapay, GafapayAccount)
    assert found_gafapay == gafapay()
    assert found_gafapay.token is not None
    assert found_gafapay.token.get_secret_value() == GAFA_TOKEN

    bob = await store.linked("bob")
    assert set(bob) == {"gafapay"}
    assert isinstance(bob["gafapay"], GafapayAccount)
    assert bob["gafapay"].token is None
    assert bob["gafapay"].gafapay_user_id == "0b0b"


async def test_delete_unlinks_once(make_sql_store: StoreFactory) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    assert await store.delete("bob", "benepia") is False
    assert await store.delete("alice", "benepia") is True
    assert await store.delete("alice", "benepia") is False
    assert [i.provider for i in await store.accounts("alice")] == ["gafapay"]
    assert set(await store.linked("alice")) == {"gafapay"}
    # Linking again after an unlink is a new link.
    _, created = await link(store, "alice", "benepia", benepia())
    assert created is True


async def test_a_user_sees_only_their_own_accounts(make_sql_store: StoreFactory) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    await link(store, "bob", "benepia", benepia("bob.lee", "bob-pw"))
    assert [i.provider for i in await store.accounts("bob")] == ["benepia"]
    assert benepia_of((await store.linked("bob"))["benepia"]).benepia_user == "bob.lee"
    for nobody in ("carol", "", "ALICE", "alice%", "%"):
        assert await store.accounts(nobody) == []
        assert await store.linked(nobody) == {}


async def test_unknown_user_and_unlinked_provider_are_empty(make_sql_store: StoreFactory) -> None:
    store = make_sql_store()
    assert await store.linked("nobody") == {}
    assert await store.accounts("nobody") == []
    assert await store.count() == 0


# --- Tampering, moved values, missing keys -----------------------------------------------------


async def test_a_tampered_value_is_unreadable_for_that_provider_only(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    sealed = await sealed_of(engine, "alice", "benepia")
    await set_sealed(engine, "alice", "benepia", flip_middle(sealed))

    found = await store.linked("alice")
    error = unreadable(found["benepia"], "benepia")
    assert PASSWORD not in str(error)
    assert isinstance(found["gafapay"], GafapayAccount)
    # The listing does not need the secret, so it still shows both.
    assert [i.provider for i in await store.accounts("alice")] == ["benepia", "gafapay"]


async def test_a_garbage_value_is_unreadable(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    for garbage in ("", "v1", "v1.key-a..", "not sealed at all", "v1.key-a.AAAA.AAAA", "v1.é.é.é"):
        await set_sealed(engine, "alice", "benepia", garbage)
        unreadable((await store.linked("alice"))["benepia"], "benepia")


async def test_a_value_moved_to_another_users_row_does_not_open(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "bob", "benepia", benepia("bob.lee", "bob-pw"))
    await set_sealed(engine, "bob", "benepia", await sealed_of(engine, "alice", "benepia"))

    bob = await store.linked("bob")
    error = unreadable(bob["benepia"], "benepia")
    assert "alice" not in str(error)
    assert PASSWORD not in str(error)
    assert benepia_of((await store.linked("alice"))["benepia"]).benepia_user == "alice.kim"


async def test_a_value_copied_into_a_new_row_does_not_open(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    info, _ = await link(store, "alice", "benepia", benepia())
    sealed = await sealed_of(engine, "alice", "benepia")
    async with engine.begin() as conn:
        await conn.execute(
            t.insert().values(
                user_id="mallory",
                provider="benepia",
                masked_id=info.masked_id,
                sealed=sealed,
                key_id="key-a",
                linked_at=info.linked_at,
                updated_at=info.updated_at,
            )
        )
    unreadable((await store.linked("mallory"))["benepia"], "benepia")


async def test_a_value_moved_to_another_provider_does_not_open(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    await set_sealed(engine, "alice", "gafapay", await sealed_of(engine, "alice", "benepia"))
    found = await store.linked("alice")
    unreadable(found["gafapay"], "gafapay")
    assert isinstance(found["benepia"], BenepiaAccount)


async def test_a_sealed_value_that_no_longer_fits_the_schema_is_unreadable(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    keyring = Keyring.parse(KEY_A)
    stale = keyring.seal(b'{"benepia_user":"alice.kim"}', user_id="alice", provider="benepia")
    await set_sealed(engine, "alice", "benepia", stale)
    error = unreadable((await store.linked("alice"))["benepia"], "benepia")
    assert "schema" in str(error)


async def test_rows_sealed_under_a_key_not_held_are_unreadable_and_fail_start_up(
    make_sql_store: StoreFactory,
) -> None:
    old = make_sql_store(KEY_A)
    await link(old, "alice", "benepia", benepia())
    await link(old, "alice", "gafapay", gafapay())
    await old.check_ready()

    new = make_sql_store(KEY_B)
    found = await new.linked("alice")
    for provider in ("benepia", "gafapay"):
        error = unreadable(found[provider], provider)
        assert "key-a" in str(error)
    with pytest.raises(ConfigurationError) as caught:
        await new.check_ready()
    message = str(caught.value)
    assert "key-a" in message
    assert "key-b" not in message
    assert KEY_A.partition(":")[2] not in message
    assert KEY_B.partition(":")[2] not in message

    # Holding the old key again (current key first) is enough.
    both = make_sql_store(KEY_B, KEY_A)
    await both.check_ready()
    assert benepia_of((await both.linked("alice"))["benepia"]) == benepia()


async def test_check_ready_on_an_empty_store_passes(make_sql_store: StoreFactory) -> None:
    await make_sql_store(KEY_B).check_ready()


# --- Concurrency -------------------------------------------------------------------------------


async def test_concurrent_upserts_of_one_account_leave_one_row(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    submitted = [benepia("alice.kim", f"pw-{n:02d}") for n in range(50)]
    results = await asyncio.gather(*(link(store, "alice", "benepia", a) for a in submitted))
    assert [created for _, created in results].count(True) == 1
    assert len({info.linked_at for info, _ in results}) == 1
    assert await row_count(engine) == 1
    survivor = benepia_of((await store.linked("alice"))["benepia"])
    assert survivor in submitted


async def test_concurrent_upserts_from_two_stores_and_users(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    first, second = make_sql_store(), make_sql_store(KEY_B, KEY_A)
    jobs = [
        link(store, user, "benepia", benepia("alice.kim", f"{user}-{n}"))
        for n in range(10)
        for user in ("alice", "bob")
        for store in (first, second)
    ]
    results = await asyncio.gather(*jobs)
    assert [created for _, created in results].count(True) == 2
    assert await row_count(engine) == 2
    reader = make_sql_store(KEY_B, KEY_A)
    for user in ("alice", "bob"):
        survivor = benepia_of((await reader.linked(user))["benepia"])
        assert survivor.benepia_password.get_secret_value().startswith(f"{user}-")


async def test_concurrent_links_and_unlinks_raise_nothing(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()

    async def churn(n: int) -> object:
        if n % 3 == 0:
            return await store.delete("alice", "benepia")
        return await link(store, "alice", "benepia", benepia("alice.kim", f"pw-{n}"))

    await asyncio.gather(*(churn(n) for n in range(30)))
    assert await row_count(engine) in (0, 1)
    found = await store.linked("alice")
    if found:
        assert isinstance(found["benepia"], BenepiaAccount)


# --- Recording fetches -------------------------------------------------------------------------


async def test_note_fetched_records_in_the_background_and_is_throttled(
    make_sql_store: StoreFactory,
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())

    async def last_fetch() -> dict[str, datetime | None]:
        return {i.provider: i.last_fetch_at for i in await store.accounts("alice")}

    before = datetime.now(UTC)
    store.note_fetched("alice", ["benepia"])

    async def benepia_noted() -> bool:
        return (await last_fetch())["benepia"] is not None and not store._background

    await eventually(benepia_noted)
    first = await last_fetch()
    noted = first["benepia"]
    assert noted is not None
    assert noted.tzinfo is not None
    assert before <= noted <= datetime.now(UTC)
    assert first["gafapay"] is None

    # Within the interval the same account schedules nothing at all.
    store.note_fetched("alice", ["benepia"])
    assert not store._background
    await asyncio.sleep(0.05)
    assert (await last_fetch())["benepia"] == noted

    # ... while an account not noted yet is still written.
    store.note_fetched("alice", ["benepia", "gafapay"])
    assert len(store._background) == 1

    async def gafapay_noted() -> bool:
        return (await last_fetch())["gafapay"] is not None and not store._background

    await eventually(gafapay_noted)
    assert (await last_fetch())["benepia"] == noted


async def test_note_fetched_for_unlinked_accounts_writes_nothing(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    store.note_fetched("ghost", ["benepia"])

    async def idle() -> bool:
        return not store._background

    await eventually(idle)
    assert await row_count(engine) == 0


# --- The database down ------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DownEngine = Callable[[Path], AsyncEngine]


def pg_closed_port(_: Path) -> AsyncEngine:
    return build_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/test", timeout=1)


def sqlite_under_a_regular_file(tmp_path: Path) -> AsyncEngine:
    (tmp_path / "plain-file").write_text("not a directory")
    # build_engine would try (and fail) to create the directory; the store must cope on its own.
    return create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/plain-file/accounts.db")


def sqlite_path_is_a_directory(tmp_path: Path) -> AsyncEngine:
    (tmp_path / "a-directory").mkdir()
    return build_engine(f"sqlite+aiosqlite:///{tmp_path}/a-directory", timeout=1)


@pytest.fixture(
    params=[pg_closed_port, sqlite_under_a_regular_file, sqlite_path_is_a_directory],
    ids=["postgresql-closed-port", "sqlite-under-a-file", "sqlite-path-is-a-directory"],
)
async def down_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqlAccountStore]:
    factory: DownEngine = request.param
    db = factory(tmp_path)
    store = SqlAccountStore(db, Keyring.parse(KEY_A), PLUGINS, timeout=2.0)
    yield store
    await store.aclose()
    # aiosqlite stops the worker thread of a failed connect without waiting for it: let it end
    # while this test's loop still runs (else it reports "Event loop is closed" later on).
    await asyncio.sleep(0.1)


def assert_store_unavailable(error: StoreUnavailable) -> None:
    assert error.code == "store_unavailable"
    assert error.status == 503
    assert error.retry_after is not None
    assert error.retry_after > 0
    assert "sEcReT" not in str(error)


async def test_every_operation_on_a_down_database_is_store_unavailable(
    down_store: SqlAccountStore,
) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: down_store.linked("alice"),
        lambda: down_store.accounts("alice"),
        lambda: link(down_store, "alice", "benepia", benepia()),
        lambda: down_store.delete("alice", "benepia"),
        down_store.check_ready,
        down_store.count,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        assert_store_unavailable(caught.value)


async def test_note_fetched_on_a_down_database_is_silent(down_store: SqlAccountStore) -> None:
    down_store.note_fetched("alice", ["benepia", "gafapay"])
    await down_store.aclose()  # finishes the background write, which must not raise


@contextlib.asynccontextmanager
async def lock_held(engine: AsyncEngine, seconds: float) -> AsyncIterator[None]:
    """Another connection holds the table's write lock for at most `seconds` (from entering)."""
    locked, done = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with engine.connect() as holder:
            transaction = await holder.begin()
            if engine.dialect.name == "postgresql":
                await holder.execute(text("LOCK TABLE linked_accounts IN ACCESS EXCLUSIVE MODE"))
            else:
                await holder.execute(update(t).values(masked_id="held"))
            locked.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await done.wait()
            await transaction.rollback()

    task = asyncio.create_task(hold())
    await locked.wait()
    try:
        yield
    finally:
        done.set()
        await task


@pytest.fixture
async def impatient(engine: AsyncEngine) -> AsyncIterator[SqlAccountStore]:
    """A store on the fixture's database built as the app builds it, with a 0.3 s timeout."""
    if engine.dialect.name == "sqlite":
        db = build_engine(engine.url.render_as_string(hide_password=False), timeout=0.3)
    else:
        async with engine.connect() as conn:
            schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
        db = build_engine(PG_URL, timeout=0.3, pg_schema=str(schema))
    store = SqlAccountStore(db, Keyring.parse(KEY_A), PLUGINS, timeout=0.3)
    yield store
    await store.aclose()
    # Finalise any connection a cancelled call abandoned while this test's loop still runs.
    gc.collect()
    await asyncio.sleep(0.05)


async def can_write(engine: AsyncEngine, *, within: float) -> bool:
    """Whether a new writer gets the database within `within` seconds."""
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        assert path is not None

        def try_lock() -> bool:
            raw = sqlite3.connect(path, timeout=within, isolation_level=None)
            try:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                raw.close()

        return await asyncio.to_thread(try_lock)
    try:
        async with asyncio.timeout(within), engine.begin() as conn:
            await conn.execute(text("LOCK TABLE linked_accounts IN ACCESS EXCLUSIVE MODE"))
        return True
    except TimeoutError:
        return False


async def test_a_stalled_database_is_store_unavailable_in_time_and_nothing_is_half_written(
    make_sql_store: StoreFactory, engine: AsyncEngine, impatient: SqlAccountStore
) -> None:
    """A lock held elsewhere stalls the store: it answers 503 near its timeout, writes nothing,
    leaves no lock behind, and works again once the lock is gone."""
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    loop = asyncio.get_running_loop()
    async with lock_held(engine, 2.0):
        started = loop.time()
        with pytest.raises(StoreUnavailable) as caught:
            await link(impatient, "alice", "benepia", benepia("alice.kim", "half-written?"))
        elapsed = loop.time() - started
        assert_store_unavailable(caught.value)
        with pytest.raises(StoreUnavailable):
            await impatient.delete("alice", "benepia")
    assert elapsed < 1.0, f"StoreUnavailable after {elapsed:.2f} s with a 0.3 s timeout"

    await asyncio.sleep(0.1)  # let any stalled statement finish, were it going to
    assert await can_write(engine, within=0.3), "a lock is still held after the timeout"
    assert await row_count(engine) == 1
    alice = benepia_of((await store.linked("alice"))["benepia"])
    assert alice.benepia_password.get_secret_value() == PASSWORD
    assert [i.masked_id for i in await store.accounts("alice")] == ["al****im"]
    _, created = await link(impatient, "bob", "benepia", benepia("bob.lee", "bob-pw"))
    assert created is True


async def test_reads_under_a_held_write_lock(
    engine: AsyncEngine, impatient: SqlAccountStore
) -> None:
    """SQLite (WAL) keeps serving reads during a write; PostgreSQL's table lock stalls them."""
    await link(impatient, "alice", "benepia", benepia())
    async with lock_held(engine, 2.0):
        if engine.dialect.name == "sqlite":
            assert [i.provider for i in await impatient.accounts("alice")] == ["benepia"]
            assert isinstance((await impatient.linked("alice"))["benepia"], BenepiaAccount)
        else:
            with pytest.raises(StoreUnavailable):
                await impatient.linked("alice")


# --- Migrations --------------------------------------------------------------------------------


async def test_running_the_migrations_again_is_a_no_op(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    assert await schema_state(engine) == "current"
    await upgrade(engine)
    await upgrade(engine)
    async with engine.connect() as conn:
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert [v[0] for v in versions] == ["0004"]
    assert await row_count(engine) == 1
    assert benepia_of((await store.linked("alice"))["benepia"]) == benepia()


async def test_lookups_survive_the_server_dropping_every_connection(
    engine: AsyncEngine, make_sql_store: StoreFactory
) -> None:
    """Lookups do not ping before each query: a connection the server dropped is replaced."""
    if engine.dialect.name != "postgresql":
        pytest.skip("only a server can drop the pooled connections")
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    assert set(await store.linked("alice")) == {"benepia"}  # the pool now holds a connection
    admin = create_async_engine(PG_URL)
    try:
        async with admin.connect() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = 'points-gateway lookups'"
                )
            )
    finally:
        await admin.dispose()
    assert killed

    assert set(await store.linked("alice")) == {"benepia"}
    assert [i.provider for i in await store.accounts("alice")] == ["benepia"]


async def test_lookups_asked_together_share_one_query_each_with_its_own_rows(
    engine: AsyncEngine, make_sql_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("lookups are batched on PostgreSQL only")
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    await link(store, "alice", "gafapay", gafapay())
    await link(store, "bob", "gafapay", gafapay(user_id="b0b"))
    lookups = _LOOKUPS[engine]
    assert isinstance(lookups, AsyncpgLookups)
    batches: list[list[str]] = []
    fetch = lookups._fetch

    async def counted(users: list[str]) -> list[tuple[str, str, str, str | None]]:
        batches.append(sorted(users))
        return await fetch(users)

    monkeypatch.setattr(lookups, "_fetch", counted)
    alice, bob, nobody, alice_again = await asyncio.gather(
        store.linked("alice"), store.linked("bob"), store.linked("nobody"), store.linked("alice")
    )
    # The first asks alone (nothing was running); those asking while it runs share one query.
    assert batches == [["alice"], ["alice", "bob", "nobody"]]
    assert set(alice) == {"benepia", "gafapay"}
    assert set(alice_again) == {"benepia", "gafapay"}
    assert set(bob) == {"gafapay"}
    assert gafapay_of(bob["gafapay"]).gafapay_user_id == "b0b"
    assert nobody == {}


async def test_a_caller_giving_up_leaves_the_batch_to_the_others(
    engine: AsyncEngine, make_sql_store: StoreFactory
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("lookups are batched on PostgreSQL only")
    store = make_sql_store()
    await link(store, "alice", "benepia", benepia())
    impatient = asyncio.ensure_future(store.linked("alice"))
    patient = asyncio.ensure_future(store.linked("alice"))
    await asyncio.sleep(0)
    impatient.cancel()
    assert set(await patient) == {"benepia"}
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_hundreds_of_concurrent_lookups_all_answer(
    engine: AsyncEngine, make_sql_store: StoreFactory
) -> None:
    """Many more callers than pooled connections: none waits out the timeout."""
    store = make_sql_store(timeout=2.0)
    await link(store, "alice", "benepia", benepia())
    found = await asyncio.wait_for(
        asyncio.gather(*(store.linked("alice" if n % 2 else f"user-{n}") for n in range(600))),
        30,
    )
    assert [set(f) for f in found[1::2]] == [{"benepia"}] * 300
    assert all(f == {} for f in found[::2])


async def test_a_batch_that_fails_fails_every_caller_in_it_as_store_unavailable(
    engine: AsyncEngine, make_sql_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("lookups are batched on PostgreSQL only")
    store = make_sql_store()
    lookups = _LOOKUPS[engine]
    assert isinstance(lookups, AsyncpgLookups)

    async def down(users: list[str]) -> list[tuple[str, str, str]]:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(lookups, "_fetch", down)
    answers = await asyncio.gather(
        store.linked("alice"), store.linked("bob"), return_exceptions=True
    )
    assert all(isinstance(a, StoreUnavailable) for a in answers), answers

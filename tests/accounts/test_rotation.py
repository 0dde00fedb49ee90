"""`keys rotate`: every row re-sealed under the current key, resumable, safe while serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.accounts import rotation
from app.accounts.rotation import RotationReport, pending, rotate
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.errors import ConfigurationError, CredentialsUnreadable
from app.providers.base import Ownership
from app.providers.benepia import BenepiaAccount
from app.providers.gafapay import GafapayAccount
from tests.accounts.conftest import KEY_A, KEY_B, StoreFactory

SECRET, TRUSTED = Ownership.SECRET, Ownership.TRUSTED_LINK

KEY_C = Keyring.generate_entry("key-c")
USERS = [f"user-{n:02d}" for n in range(12)]
CURRENCY = "1f1519903ed240578f071aa45cb479f2"


def benepia(user_id: str, password: str) -> BenepiaAccount:
    return BenepiaAccount(benepia_user=f"{user_id}.b", benepia_password=SecretStr(password))


def gafapay(n: int) -> GafapayAccount:
    return GafapayAccount(
        gafapay_user_id=f"{n:x}", currency_id=CURRENCY, token=SecretStr(f"tok-{n}")
    )


async def seed(store: SqlAccountStore, users: list[str] = USERS) -> None:
    for user_id in users:
        n = USERS.index(user_id)
        await store.upsert(
            user_id, "benepia", benepia(user_id, f"pw-{user_id}"), masked_id="m", ownership=SECRET
        )
        if n % 2 == 0:
            await store.upsert(user_id, "gafapay", gafapay(n), masked_id="m", ownership=TRUSTED)


async def key_ids(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.c.user_id, t.c.provider, t.c.sealed, t.c.key_id))).all()
    for _, _, sealed, key_id in rows:
        # The column and the key id inside the sealed value always agree.
        assert Keyring.key_id_of(sealed) == key_id
    return {(user_id, provider): key_id for user_id, provider, _, key_id in rows}


async def sealed_of(engine: AsyncEngine, user_id: str, provider: str) -> str:
    query = select(t.c.sealed).where(t.c.user_id == user_id, t.c.provider == provider)
    async with engine.connect() as conn:
        return str((await conn.execute(query)).scalar_one())


async def assert_all_readable(store: SqlAccountStore, users: list[str] = USERS) -> None:
    for user_id in users:
        n = USERS.index(user_id)
        found = await store.linked(user_id)
        account = found["benepia"]
        assert isinstance(account, BenepiaAccount), (user_id, account)
        assert account == benepia(user_id, f"pw-{user_id}")
        if n % 2 == 0:
            assert found["gafapay"] == gafapay(n)


async def test_rotation_reseals_every_row_under_the_current_key(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A))
    assert set((await key_ids(engine)).values()) == {"key-a"}
    rows = len(await key_ids(engine))

    report = await rotate(engine, Keyring.parse(f"{KEY_B},{KEY_A}"), batch=5)
    assert report == RotationReport(resealed=rows, skipped_changed=0, unreadable=0)
    assert set((await key_ids(engine)).values()) == {"key-b"}

    new_only = make_sql_store(KEY_B)
    await new_only.check_ready()
    await assert_all_readable(new_only)
    # The old key alone no longer opens anything.
    old_only = make_sql_store(KEY_A)
    assert isinstance((await old_only.linked(USERS[0]))["benepia"], CredentialsUnreadable)


async def test_rotation_again_reseals_nothing(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A))
    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")
    first = await rotate(engine, keyring)
    assert first.resealed > 0
    before = {(u, p): await sealed_of(engine, u, p) for (u, p) in await key_ids(engine)}
    assert await rotate(engine, keyring) == RotationReport()
    assert await rotate(engine, keyring, batch=1) == RotationReport()
    after = {(u, p): await sealed_of(engine, u, p) for (u, p) in await key_ids(engine)}
    assert after == before


async def test_rotation_resumes_where_an_earlier_run_stopped(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A))
    total = len(await key_ids(engine))
    # An earlier run got part of the way (here: some rows already under key-b).
    await seed(make_sql_store(KEY_B, KEY_A), USERS[:3])
    already = sum(1 for k in (await key_ids(engine)).values() if k == "key-b")
    assert 0 < already < total
    report = await rotate(engine, Keyring.parse(f"{KEY_B},{KEY_A}"), batch=4)
    assert report.resealed == total - already
    assert set((await key_ids(engine)).values()) == {"key-b"}
    await assert_all_readable(make_sql_store(KEY_B))


async def test_rotation_from_several_old_keys(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A), USERS[:4])
    await seed(make_sql_store(KEY_B), USERS[4:])
    report = await rotate(engine, Keyring.parse(f"{KEY_C},{KEY_A},{KEY_B}"), batch=3)
    assert report.unreadable == 0
    assert set((await key_ids(engine)).values()) == {"key-c"}
    await assert_all_readable(make_sql_store(KEY_C))


async def test_an_unreadable_row_is_counted_and_left_while_the_others_rotate(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A))
    victim = USERS[3]
    sealed = await sealed_of(engine, victim, "benepia")
    head, _, body = sealed.rpartition(".")
    i = len(body) // 2
    tampered = f"{head}.{body[:i]}{'B' if body[i] == 'A' else 'A'}{body[i + 1 :]}"
    async with engine.begin() as conn:
        await conn.execute(
            update(t)
            .where(t.c.user_id == victim, t.c.provider == "benepia")
            .values(sealed=tampered)
        )
    rows = len(await key_ids(engine))

    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")
    for batch in (1, 2, 200):
        report = await rotate(engine, keyring, batch=batch)
        assert report.unreadable == 1
        assert report.resealed == (rows - 1 if batch == 1 else 0)
    assert await sealed_of(engine, victim, "benepia") == tampered
    ids = await key_ids(engine)
    assert ids.pop((victim, "benepia")) == "key-a"
    assert set(ids.values()) == {"key-b"}

    reader = make_sql_store(KEY_B, KEY_A)
    found = await reader.linked(victim)
    assert isinstance(found["benepia"], CredentialsUnreadable)
    others = [u for u in USERS if u != victim]
    await assert_all_readable(make_sql_store(KEY_B), others)


async def test_rows_under_a_key_not_held_are_counted_unreadable(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_C), USERS[:2])
    await seed(make_sql_store(KEY_A), USERS[2:])
    report = await rotate(engine, Keyring.parse(f"{KEY_B},{KEY_A}"), batch=2)
    lost = sum(1 for (u, _) in await key_ids(engine) if u in USERS[:2])
    assert report.unreadable == lost
    with_b_and_a = make_sql_store(KEY_B, KEY_A)
    with pytest.raises(ConfigurationError, match="key-c"):
        await with_b_and_a.check_ready()
    await assert_all_readable(make_sql_store(KEY_B), USERS[2:])


async def test_rotation_while_serving_keeps_the_newest_value(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    """Links made during a rotation (under the new key) win; nothing is left unreadable."""
    await seed(make_sql_store(KEY_A))
    serving = make_sql_store(KEY_B, KEY_A)
    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")

    async def relink() -> None:
        for user_id in USERS:
            await serving.upsert(
                user_id, "benepia", benepia(user_id, "newest"), masked_id="m", ownership=SECRET
            )
            await asyncio.sleep(0)

    report, _ = await asyncio.gather(rotate(engine, keyring, batch=1), relink())
    assert report.unreadable == 0

    assert set((await key_ids(engine)).values()) == {"key-b"}
    reader = make_sql_store(KEY_B)
    await reader.check_ready()
    for n, user_id in enumerate(USERS):
        found = await reader.linked(user_id)
        assert found["benepia"] == benepia(user_id, "newest"), user_id
        if n % 2 == 0:
            assert found["gafapay"] == gafapay(n)


async def test_rotation_racing_links_under_the_old_key_converges(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    """A server not yet given the new key keeps sealing under key-a; a rerun finishes the job."""
    await seed(make_sql_store(KEY_A))
    old_server = make_sql_store(KEY_A)
    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")

    async def relink() -> None:
        for user_id in USERS:
            await old_server.upsert(
                user_id, "benepia", benepia(user_id, "newest"), masked_id="m", ownership=SECRET
            )
            await asyncio.sleep(0)

    first, _ = await asyncio.gather(rotate(engine, keyring, batch=1), relink())
    assert first.unreadable == 0
    await rotate(engine, keyring)
    assert set((await key_ids(engine)).values()) == {"key-b"}
    reader = make_sql_store(KEY_B)
    for user_id in USERS:
        assert (await reader.linked(user_id))["benepia"] == benepia(user_id, "newest")


@pytest.mark.parametrize("batch", [0, -1])
async def test_a_batch_size_below_one_is_refused(
    make_sql_store: StoreFactory, engine: AsyncEngine, batch: int
) -> None:
    await seed(make_sql_store(KEY_A), USERS[:3])
    with pytest.raises(ValueError, match="batch"):
        async with asyncio.timeout(0.5):
            await rotate(engine, Keyring.parse(f"{KEY_B},{KEY_A}"), batch=batch)


# --- one pass at scale (issue 18) -------------------------------------------------------------

FIVE = USERS[:5]  # 5 Benepia rows and 3 GafaPay rows: 8 rows, 4 batches of 2


async def tamper(engine: AsyncEngine, user_id: str, provider: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(t)
            .where(t.c.user_id == user_id, t.c.provider == provider)
            .values(sealed="v1.key-a.AAAA.AAAA")
        )


async def test_one_pass_reads_each_row_once_in_batches(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A), FIVE)
    rows = len(await key_ids(engine))
    assert rows == 8
    await tamper(engine, FIVE[1], "benepia")
    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")
    assert await pending(engine, keyring) == rows

    looked_at: list[int] = []
    report = await rotate(engine, keyring, batch=2, on_batch=lambda r: looked_at.append(r.rows))
    # Each batch starts after the one before: every row looked at once, the unreadable one too.
    assert looked_at == [2, 4, 6, 8]
    assert report == RotationReport(resealed=rows - 1, skipped_changed=0, unreadable=1)
    assert await pending(engine, keyring) == 1
    await assert_all_readable(make_sql_store(KEY_B), [u for u in FIVE if u != FIVE[1]])

    # A rerun looks only at what is left: the unreadable row, counted once more.
    again: list[int] = []
    rerun = await rotate(engine, keyring, batch=2, on_batch=lambda r: again.append(r.rows))
    assert rerun == RotationReport(unreadable=1)
    assert again == [1]


async def test_max_rate_paces_the_batches(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    await seed(make_sql_store(KEY_A), FIVE)  # 8 rows
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")
    report = await rotate(engine, keyring, batch=3, max_rate=2.0, clock=lambda: now[0], sleep=sleep)
    assert report.resealed == 8
    # 2 rows a second: after 3, 6 and 8 rows the run may have taken 1.5, 3 and 4 s.
    assert slept == [1.5, 1.5, 1.0]

    await rotate(engine, Keyring.parse(f"{KEY_A},{KEY_B}"), batch=3, sleep=sleep)
    assert slept == [1.5, 1.5, 1.0]  # no max_rate: never sleeps


async def test_a_link_between_the_read_and_the_write_wins(
    make_sql_store: StoreFactory, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(make_sql_store(KEY_A), FIVE)
    serving = make_sql_store(KEY_B, KEY_A)
    keyring = Keyring.parse(f"{KEY_B},{KEY_A}")
    victim = FIVE[2]
    reseal = rotation._reseal

    async def link_first(conn: AsyncConnection, *args: Any) -> None:
        if any(row[0] == victim for row in args[1]):
            await serving.upsert(
                victim, "benepia", benepia(victim, "newest"), masked_id="m", ownership=SECRET
            )
        await reseal(conn, *args)

    monkeypatch.setattr(rotation, "_reseal", link_first)
    report = await rotate(engine, keyring, batch=2)
    assert report.skipped_changed == 1
    assert report.resealed == len(await key_ids(engine)) - 1
    assert set((await key_ids(engine)).values()) == {"key-b"}
    found = await make_sql_store(KEY_B).linked(victim)
    assert found["benepia"] == benepia(victim, "newest")
    assert await rotate(engine, keyring) == RotationReport()

"""Stored ownership, on SQLite and PostgreSQL: rows linked before the gateway checked it.

Each link records what proved the account (`linked_accounts.ownership`). A row from before
revision 0002 has none: on every read it is admitted only if the account proves itself (a
Benepia password; a GafaPay token whose `sub` is the account's id). A GafaPay account linked by
its ids alone is answered `ownership_proof_required` until it is linked again with proof, by a
service holding `accounts:link_trusted`, or by `accounts import`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.engine import build_engine
from app.accounts.migrate import schema_problem, schema_state, upgrade
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.errors import ConfigurationError, OwnershipProofRequired
from app.gateway import open_store, plan_gateway
from app.main import create_app
from app.providers.base import Ownership
from app.providers.benepia import BenepiaAccount
from app.providers.gafapay import GafapayAccount
from app.security.api_keys import hash_key
from tests.accounts.conftest import KEY_A, StoreFactory
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_PASSWORD,
    CURRENCY,
    customer_token,
    gafapay_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)

LINKER_KEY = "pgk-onboarding-0123456789abcdef01234567"
AUTH = {
    "mode": "required",
    "jwt_secret": "hs256-test-secret-of-forty-bytes-000000",
    "api_keys": [
        {
            "name": "onboarding",
            "sha256": hash_key(LINKER_KEY),
            "scopes": ["points:read", "accounts:write", "accounts:link_trusted"],
        }
    ],
}
BENEPIA = BenepiaAccount(benepia_user="alice.kim", benepia_password=SecretStr(BENEPIA_PASSWORD))
IDS_ONLY = GafapayAccount(gafapay_user_id=ALICE_GAFAPAY, currency_id=CURRENCY)


def with_token(sub: str) -> GafapayAccount:
    return GafapayAccount(
        gafapay_user_id=ALICE_GAFAPAY, currency_id=CURRENCY, token=SecretStr(customer_token(sub))
    )


async def link_unrecorded(
    store: SqlAccountStore, engine: AsyncEngine, user: str, account: object
) -> None:
    """Link, then forget what proved it: the row as revision 0001 left it."""
    provider = "benepia" if isinstance(account, BenepiaAccount) else "gafapay"
    assert isinstance(account, BenepiaAccount | GafapayAccount)
    await store.upsert(user, provider, account, masked_id="m", ownership=Ownership.SECRET)
    statement = (
        update(t).where(and_(t.c.user_id == user, t.c.provider == provider)).values(ownership=None)
    )
    async with engine.begin() as conn:
        assert (await conn.execute(statement)).rowcount == 1


async def test_unrecorded_rows_are_admitted_only_with_proof(
    make_sql_store: StoreFactory, engine: AsyncEngine
) -> None:
    store = make_sql_store()
    await link_unrecorded(store, engine, "alice", BENEPIA)
    await link_unrecorded(store, engine, "alice", IDS_ONLY)
    await link_unrecorded(store, engine, "carol", with_token(ALICE_GAFAPAY.upper()))
    await link_unrecorded(store, engine, "mallory", with_token("0b0b"))

    alice = await store.linked("alice")
    assert alice["benepia"] == BENEPIA  # a password proves itself at every query
    refused = alice["gafapay"]
    assert isinstance(refused, OwnershipProofRequired)
    assert refused.provider == "gafapay"
    assert "link it again" in refused.detail
    assert isinstance((await store.linked("carol"))["gafapay"], GafapayAccount)
    assert isinstance((await store.linked("mallory"))["gafapay"], OwnershipProofRequired)


async def test_a_recorded_link_is_served_as_linked(make_sql_store: StoreFactory) -> None:
    store = make_sql_store()
    await store.upsert(
        "alice", "gafapay", IDS_ONLY, masked_id="m", ownership=Ownership.TRUSTED_LINK
    )
    assert (await store.linked("alice"))["gafapay"] == IDS_ONLY


@pytest.fixture
async def api(
    upstream: respx.MockRouter, make_sql_store: StoreFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, SqlAccountStore]]:
    store = make_sql_store()
    app = create_app(
        make_settings(auth=AUTH),
        transport=httpx.MockTransport(upstream.async_handler),
        store=store,
    )
    async with serve_in_process(app) as client:
        yield client, store


async def test_an_unproven_row_answers_ownership_proof_required_until_relinked(
    api: tuple[httpx.AsyncClient, SqlAccountStore],
    engine: AsyncEngine,
    upstream: respx.MockRouter,
) -> None:
    client, store = api
    _, _, gafapay = mock_upstreams(upstream, gafapay=gafapay_ok())
    await link_unrecorded(store, engine, "alice", BENEPIA)
    await link_unrecorded(store, engine, "alice", IDS_ONLY)
    key = {"x-api-key": LINKER_KEY}

    merged = await client.get("/users/alice/points", headers=key)
    assert merged.status_code == 200, merged.text
    entries = {e["provider"]: e for e in merged.json()["balances"]}
    assert merged.json()["complete"] is False
    assert entries["benepia"]["status"] == "ok"
    assert entries["gafapay"]["error"]["code"] == "ownership_proof_required"
    assert entries["gafapay"]["error"]["status"] == 403
    one = await client.get("/users/alice/points/gafapay", headers=key)
    assert one.status_code == 403
    assert one.json()["code"] == "ownership_proof_required"
    assert gafapay.call_count == 0  # never asked upstream

    relinked = await client.put(
        "/users/alice/accounts/gafapay", json=IDS_ONLY.model_dump(exclude_none=True), headers=key
    )
    assert relinked.status_code == 200, relinked.text
    served = await client.get("/users/alice/points/gafapay", headers=key)
    assert served.status_code == 200, served.text
    assert served.json()["points"] == "250.0"


# --- the migration itself -------------------------------------------------------------------


async def test_upgrading_keeps_earlier_rows_with_no_recorded_ownership(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = build_engine(url, timeout=5.0)
    keyring = Keyring.parse(KEY_A)
    try:
        await upgrade(engine, "0001")
        assert await schema_state(engine) == "behind"
        assert "db upgrade" in (schema_problem("behind") or "")
        sealed = keyring.seal(
            b'{"gafapay_user_id":"fb8f","currency_id":"1f"}', user_id="bob", provider="gafapay"
        )
        now = datetime.now(UTC)
        # Only the columns revision 0001 has: the row as an earlier release wrote it.
        row = insert(t).values(
            user_id="bob",
            provider="gafapay",
            masked_id="m",
            sealed=sealed,
            key_id=keyring.current_id,
            linked_at=now,
            updated_at=now,
        )
        async with engine.begin() as conn:
            await conn.execute(row)
        await upgrade(engine)
        assert await schema_state(engine) == "current"
        async with engine.connect() as conn:
            kept = (await conn.execute(select(t.c.user_id, t.c.ownership))).all()
        assert [tuple(r) for r in kept] == [("bob", None)]
    finally:
        await engine.dispose()


async def test_the_gateway_refuses_to_start_on_an_older_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = build_engine(url, timeout=5.0)
    try:
        await upgrade(engine, "0001")
    finally:
        await engine.dispose()
    settings = make_settings(database_url=url, secret_keys=KEY_A)
    with pytest.raises(ConfigurationError, match=r"older than this release.*db upgrade"):
        await open_store(plan_gateway(settings))

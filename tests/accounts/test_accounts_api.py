"""Linked accounts through the HTTP API, on SQLite and on the real PostgreSQL.

Every app here is `create_app(store=make_sql_store())` with respx upstreams, so each test runs
once per backend of the `engine` fixture; the database is also read and altered directly
through that engine (row counts, tampering).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.engine import build_engine
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.main import create_app
from app.providers.benepia import BenepiaAccount
from app.providers.gafapay import GafapayAccount
from tests.accounts.conftest import KEY_A, PG_URL, PLUGINS, StoreFactory
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
from tests.support.problems import assert_problem, strings
from tests.support.servers import closed_port

ALICE_BENEPIA = {"benepia_user": "alice.kim", "benepia_password": BENEPIA_PASSWORD}
ALICE_GAFAPAY_ACCOUNT = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
BOB_BENEPIA = {"benepia_user": "bob.park", "benepia_password": "bobs-own-benepia-pw"}
BOB_GAFAPAY = {"gafapay_user_id": "0B0B", "currency_id": CURRENCY}
ACCOUNT_TOKEN = customer_token(ALICE_GAFAPAY, jti="per-account-gafapay-token-0042")
INFO_KEYS = {"provider", "masked_id", "linked_at", "updated_at", "last_fetch_at"}
REJECTED = {"code": 1, "message": "베네피아 로그인에 실패했습니다.", "response": None}


@pytest.fixture
def store(make_sql_store: StoreFactory) -> SqlAccountStore:
    """The store behind the app (key A), on the parametrized backend."""
    return make_sql_store()


@pytest.fixture
async def api(
    upstream: respx.MockRouter, store: SqlAccountStore
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a gateway over the SQL store (respx upstreams)."""
    app = create_app(
        make_settings(request_deadline=0.5),
        transport=httpx.MockTransport(upstream.async_handler),
        store=store,
    )
    async with serve_in_process(app) as client:
        yield client


def echo_gafapay(request: httpx.Request) -> httpx.Response:
    """A GafaPay success for whichever user the request asks about."""
    return gafapay_ok(user_id=request.url.params["user_id"])


async def rows(engine: AsyncEngine, user_id: str | None = None) -> int:
    """How many linked_accounts rows there are (of `user_id`), counted in SQL."""
    query = select(func.count()).select_from(t)
    if user_id is not None:
        query = query.where(t.c.user_id == user_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def sealed_of(engine: AsyncEngine, user_id: str, provider: str) -> str:
    """The raw sealed column of one row."""
    query = select(t.c.sealed).where(and_(t.c.user_id == user_id, t.c.provider == provider))
    async with engine.connect() as conn:
        value = (await conn.execute(query)).scalar_one()
    assert isinstance(value, str)
    return value


async def set_sealed(engine: AsyncEngine, user_id: str, provider: str, sealed: str) -> None:
    """Overwrite one row's sealed column, as someone with database access could."""
    statement = (
        update(t)
        .where(and_(t.c.user_id == user_id, t.c.provider == provider))
        .values(sealed=sealed)
    )
    async with engine.begin() as conn:
        assert (await conn.execute(statement)).rowcount == 1


def flipped(sealed: str) -> str:
    """The sealed value with one bit of its ciphertext flipped (still well-formed)."""
    head, _, body = sealed.rpartition(".")
    data = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data[len(data) // 2] ^= 0x01
    return f"{head}.{base64.urlsafe_b64encode(bytes(data)).decode().rstrip('=')}"


async def link(
    api: httpx.AsyncClient, user: str, provider: str, body: dict[str, str]
) -> httpx.Response:
    r = await api.put(f"/users/{user}/accounts/{provider}", json=body)
    assert r.status_code in (200, 201), r.text
    return r


async def linked_providers(api: httpx.AsyncClient, user: str) -> list[str]:
    r = await api.get(f"/users/{user}/accounts")
    assert r.status_code == 200, r.text
    return [a["provider"] for a in r.json()["accounts"]]


def sent_benepia_users(route: respx.Route, since: int = 0) -> list[str]:
    """The benepia_user of every Benepia point call the upstream received (from call `since`)."""
    return [json.loads(c.request.content)["benepia_user"] for c in route.calls[since:]]


# --- PUT ----------------------------------------------------------------------------------


async def test_put_links_then_replaces_with_201_then_200(api: httpx.AsyncClient) -> None:
    first = await api.put("/users/alice/accounts/benepia", json=ALICE_BENEPIA)
    second = await api.put("/users/alice/accounts/benepia", json=ALICE_BENEPIA)

    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    for r in (first, second):
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        assert BENEPIA_PASSWORD not in r.text
        assert set(r.json()) == INFO_KEYS
    a, b = first.json(), second.json()
    assert a["provider"] == b["provider"] == "benepia"
    assert a["masked_id"] == b["masked_id"] == "al****im"
    assert a["linked_at"] == b["linked_at"]
    assert datetime.fromisoformat(b["updated_at"]) > datetime.fromisoformat(a["updated_at"])
    assert a["last_fetch_at"] is None


async def test_put_gafapay_with_short_hex_ids(
    api: httpx.AsyncClient, store: SqlAccountStore
) -> None:
    r = await api.put(
        "/users/bob/accounts/gafapay", json={"gafapay_user_id": "0B0B", "currency_id": "1F"}
    )

    assert r.status_code == 201, r.text
    assert r.json()["masked_id"] == "****"
    account = (await store.linked("bob"))["gafapay"]
    assert isinstance(account, GafapayAccount)
    assert (account.gafapay_user_id, account.currency_id) == ("0b0b", "1f")
    assert await linked_providers(api, "bob") == ["gafapay"]


MARK = "ECHO-MARK-7f3a"
INVALID_BODIES: list[tuple[str, str, bytes | str, list[str | int]]] = [
    ("missing field", "benepia", json.dumps({"benepia_user": MARK}), ["body", "benepia_password"]),
    (
        "extra field",
        "benepia",
        json.dumps({**ALICE_BENEPIA, "benepia_password": MARK, "extra": MARK}),
        ["body", "extra"],
    ),
    (
        "empty password",
        "benepia",
        json.dumps({"benepia_user": MARK, "benepia_password": ""}),
        ["body", "benepia_password"],
    ),
    (
        "non-hex id",
        "gafapay",
        json.dumps({"gafapay_user_id": f"{MARK}-zz", "currency_id": CURRENCY}),
        ["body", "gafapay_user_id"],
    ),
    ("non-object JSON", "benepia", json.dumps([MARK, MARK]), ["body"]),
    ("JSON string", "benepia", json.dumps(MARK), ["body"]),
    ("JSON null", "benepia", "null", ["body"]),
    ("empty body", "gafapay", "", ["body"]),
    ("invalid JSON", "benepia", '{"benepia_user": "' + MARK + '", "benepia_password": ', ["body"]),
]


async def test_invalid_bodies_are_422_and_echo_nothing(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    for case, provider, content, loc in INVALID_BODIES:
        for method, path in (
            ("PUT", f"/users/alice/accounts/{provider}?verify=true"),
            ("PUT", f"/users/alice/accounts/{provider}"),
            ("POST", f"/users/alice/points/{provider}"),
        ):
            r = await api.request(
                method, path, content=content, headers={"content-type": "application/json"}
            )
            body = assert_problem(r, 422, "invalid_request")
            where = f"{case}: {method} {path}"
            assert body["errors"], where
            for error in body["errors"]:
                assert set(error) == {"loc", "msg", "type"}, where
                assert error["loc"][0] == "body", where
            assert any(e["loc"][: len(loc)] == loc for e in body["errors"]), where
            assert MARK not in r.text, f"{where} echoed its input"
            assert all(MARK not in s for s in strings(body)), where
            assert MARK not in repr(r.headers.multi_items()), where
    assert tokens.call_count == point.call_count == gafa.call_count == 0
    assert await rows(engine) == 0


async def test_unknown_provider_is_404(api: httpx.AsyncClient) -> None:
    put = await api.put("/users/alice/accounts/nope", json=ALICE_BENEPIA)
    delete = await api.delete("/users/alice/accounts/nope")
    once = await api.post("/users/alice/points/nope", json=ALICE_BENEPIA)

    for r in (put, delete, once):
        assert_problem(r, 404, "unknown_provider")


@pytest.mark.parametrize("user", ["al!ce", "-alice", "a" * 129, "al ice"])
async def test_invalid_user_id_is_422(api: httpx.AsyncClient, user: str) -> None:
    responses = [
        await api.put(f"/users/{user}/accounts/benepia", json=ALICE_BENEPIA),
        await api.get(f"/users/{user}/accounts"),
        await api.delete(f"/users/{user}/accounts/benepia"),
        await api.post(f"/users/{user}/points/benepia", json=ALICE_BENEPIA),
    ]

    for r in responses:
        body = assert_problem(r, 422, "invalid_request")
        assert ["path", "user_id"] in [e["loc"] for e in body["errors"]]
        assert BENEPIA_PASSWORD not in r.text


# --- GET and DELETE -----------------------------------------------------------------------


async def test_list_shows_masked_ids_never_secrets(api: httpx.AsyncClient) -> None:
    await link(api, "alice", "gafapay", {**ALICE_GAFAPAY_ACCOUNT, "token": ACCOUNT_TOKEN})
    await link(api, "alice", "benepia", ALICE_BENEPIA)

    r = await api.get("/users/alice/accounts")
    empty = await api.get("/users/nobody/accounts")

    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["user_id"] == "alice"
    assert [a["provider"] for a in body["accounts"]] == ["benepia", "gafapay"]
    assert [a["masked_id"] for a in body["accounts"]] == ["al****im", "fb8f****c273"]
    for account in body["accounts"]:
        assert set(account) == INFO_KEYS
    for secret in (BENEPIA_PASSWORD, ACCOUNT_TOKEN, "benepia_password", "token", ALICE_GAFAPAY):
        assert secret not in r.text
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"user_id": "nobody", "accounts": []}


async def test_delete_unlinks_and_the_points_answer_forgets_it(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    _, point, _ = mock_upstreams(upstream)
    await link(api, "alice", "benepia", ALICE_BENEPIA)
    await link(api, "alice", "gafapay", ALICE_GAFAPAY_ACCOUNT)

    deleted = await api.delete("/users/alice/accounts/benepia")
    again = await api.delete("/users/alice/accounts/benepia")
    points = await api.get("/users/alice/points")
    single = await api.get("/users/alice/points/benepia")

    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    body = assert_problem(again, 404, "account_not_linked")
    assert body["provider"] == "benepia"
    assert await linked_providers(api, "alice") == ["gafapay"]
    assert points.status_code == 200, points.text
    assert [b["provider"] for b in points.json()["balances"]] == ["gafapay"]
    assert points.json()["complete"] is True
    assert_problem(single, 404, "account_not_linked")
    assert point.call_count == 0
    assert await rows(engine, "alice") == 1


# --- ?verify=true ---------------------------------------------------------------------------


async def test_verify_rejected_stores_nothing(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    _, point, _ = mock_upstreams(upstream, benepia=httpx.Response(200, json=REJECTED))

    r = await api.put("/users/alice/accounts/benepia?verify=true", json=ALICE_BENEPIA)

    body = assert_problem(r, 422, "provider_rejected")
    assert body["provider"] == "benepia"
    assert body["upstream_code"] == "1"
    assert r.headers["cache-control"] == "no-store"
    assert point.call_count == 1
    assert await linked_providers(api, "alice") == []
    assert await rows(engine) == 0


async def test_verify_timeout_stores_nothing(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"code": 0, "message": "", "response": {"point": 1}})

    mock_upstreams(upstream, benepia=slow)

    started = time.monotonic()
    r = await api.put("/users/alice/accounts/benepia?verify=true", json=ALICE_BENEPIA)

    assert time.monotonic() - started < 3
    body = assert_problem(r, 504, "upstream_timeout")
    assert body["provider"] == "benepia"
    assert await linked_providers(api, "alice") == []
    assert await rows(engine) == 0


async def test_verify_success_stores(
    api: httpx.AsyncClient, upstream: respx.MockRouter, store: SqlAccountStore
) -> None:
    _, point, gafa = mock_upstreams(upstream)

    r = await api.put("/users/alice/accounts/benepia?verify=true", json=ALICE_BENEPIA)
    g = await api.put("/users/alice/accounts/gafapay?verify=true", json=ALICE_GAFAPAY_ACCOUNT)

    assert r.status_code == 201, r.text
    assert g.status_code == 201, g.text
    assert point.call_count == gafa.call_count == 1
    assert await linked_providers(api, "alice") == ["benepia", "gafapay"]
    account = (await store.linked("alice"))["benepia"]
    assert isinstance(account, BenepiaAccount)
    assert account.benepia_password.get_secret_value() == BENEPIA_PASSWORD


# --- one-shot POST ------------------------------------------------------------------------


async def test_one_shot_answers_and_stores_nothing(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    _, point, gafa = mock_upstreams(upstream)

    r = await api.post("/users/alice/points/benepia", json=ALICE_BENEPIA)
    g = await api.post("/users/alice/points/gafapay", json=ALICE_GAFAPAY_ACCOUNT)

    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert (body["provider"], body["status"], body["points"]) == ("benepia", "ok", "12000")
    assert body["error"] is None
    assert g.status_code == 200, g.text
    assert g.json()["points"] == "250.0"
    assert json.loads(point.calls[0].request.content)["benepia_password"] == BENEPIA_PASSWORD
    assert gafa.call_count == 1
    assert await linked_providers(api, "alice") == []
    assert await rows(engine) == 0


async def test_one_shot_rejected_is_422(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    mock_upstreams(upstream, benepia=httpx.Response(200, json=REJECTED))

    r = await api.post("/users/alice/points/benepia", json=ALICE_BENEPIA)

    body = assert_problem(r, 422, "provider_rejected")
    assert body["provider"] == "benepia"
    assert await rows(engine) == 0


# --- linked accounts feed the points answer -----------------------------------------------


async def test_linked_accounts_feed_the_merged_answer(
    api: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    _, point, gafa = mock_upstreams(upstream)
    await link(api, "alice", "benepia", ALICE_BENEPIA)
    await link(api, "alice", "gafapay", ALICE_GAFAPAY_ACCOUNT)

    r = await api.get("/users/alice/points")

    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    assert {b["provider"]: b["points"] for b in r.json()["balances"]} == {
        "benepia": "12000",
        "gafapay": "250.0",
    }
    assert json.loads(point.calls[0].request.content) == {
        **ALICE_BENEPIA,
        "channel_key": "channel-key-test",
    }
    assert gafa.calls[0].request.url.params["user_id"] == ALICE_GAFAPAY

    deadline = time.monotonic() + 3
    while True:
        accounts = (await api.get("/users/alice/accounts")).json()["accounts"]
        if all(a["last_fetch_at"] is not None for a in accounts):
            break
        assert time.monotonic() < deadline, f"last_fetch_at never set: {accounts}"
        await asyncio.sleep(0.02)
    for account in accounts:
        fetched = datetime.fromisoformat(account["last_fetch_at"])
        assert fetched >= datetime.fromisoformat(account["linked_at"])


async def test_tampered_row_is_credentials_unreadable(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    _, point, _ = mock_upstreams(upstream)
    await link(api, "alice", "benepia", ALICE_BENEPIA)
    await link(api, "alice", "gafapay", ALICE_GAFAPAY_ACCOUNT)
    await set_sealed(
        engine, "alice", "benepia", flipped(await sealed_of(engine, "alice", "benepia"))
    )

    merged = await api.get("/users/alice/points")
    single = await api.get("/users/alice/points/benepia")
    other = await api.get("/users/alice/points/gafapay")

    assert merged.status_code == 200, merged.text
    assert merged.headers["x-points-complete"] == "false"
    body = merged.json()
    assert body["complete"] is False
    benepia, gafapay = body["balances"]
    assert (benepia["provider"], benepia["status"], benepia["points"]) == ("benepia", "error", None)
    assert benepia["error"]["code"] == "credentials_unreadable"
    assert benepia["error"]["status"] == 409
    assert benepia["error"]["provider"] == "benepia"
    assert (gafapay["status"], gafapay["points"]) == ("ok", "250.0")
    problem = assert_problem(single, 409, "credentials_unreadable")
    assert problem["provider"] == "benepia"
    assert single.headers["cache-control"] == "no-store"
    assert other.status_code == 200, other.text
    assert point.call_count == 0


async def test_sealed_value_copied_to_another_user_never_answers_for_them(
    api: httpx.AsyncClient, upstream: respx.MockRouter, engine: AsyncEngine
) -> None:
    _, point, _ = mock_upstreams(upstream, gafapay=echo_gafapay)
    await link(api, "alice", "benepia", ALICE_BENEPIA)
    await link(api, "bob", "benepia", BOB_BENEPIA)
    await link(api, "bob", "gafapay", BOB_GAFAPAY)
    await set_sealed(engine, "bob", "benepia", await sealed_of(engine, "alice", "benepia"))

    before = point.call_count
    merged = await api.get("/users/bob/points")
    single = await api.get("/users/bob/points/benepia")
    during_bob = sent_benepia_users(point, before)
    alice = await api.get("/users/alice/points/benepia")

    assert merged.status_code == 200, merged.text
    benepia, gafapay = merged.json()["balances"]
    assert benepia["status"] == "error"
    assert benepia["points"] is None
    assert benepia["error"]["code"] == "credentials_unreadable"
    assert gafapay["status"] == "ok"
    assert_problem(single, 409, "credentials_unreadable")
    assert "12000" not in merged.text
    assert "12000" not in single.text
    assert "alice.kim" not in during_bob
    assert during_bob == []
    assert alice.status_code == 200, alice.text
    assert alice.json()["points"] == "12000"


# --- the store is down --------------------------------------------------------------------


async def test_store_down_is_503_store_unavailable(upstream: respx.MockRouter) -> None:
    mock_upstreams(upstream)
    engine = build_engine(PG_URL.replace(":5432/", f":{closed_port()}/"), timeout=1)
    down = SqlAccountStore(engine, Keyring.parse(KEY_A), PLUGINS, timeout=1)
    app = create_app(
        make_settings(), transport=httpx.MockTransport(upstream.async_handler), store=down
    )

    async with serve_in_process(app) as api:
        responses = [
            await api.get("/users/alice/points"),
            await api.get("/users/alice/points/benepia"),
            await api.put("/users/alice/accounts/benepia", json=ALICE_BENEPIA),
            await api.put("/users/alice/accounts/benepia?verify=true", json=ALICE_BENEPIA),
            await api.delete("/users/alice/accounts/benepia"),
            await api.get("/users/alice/accounts"),
        ]

    for r in responses:
        where = f"{r.request.method} {r.request.url}"
        assert r.status_code == 503, f"{where}: {r.status_code} {r.text}"
        body = assert_problem(r, 503, "store_unavailable")
        assert int(r.headers["retry-after"]) > 0, where
        assert body["retry_after"] == int(r.headers["retry-after"]), where


# --- concurrency --------------------------------------------------------------------------


async def test_concurrent_puts_collapse_into_one_row(
    api: httpx.AsyncClient, store: SqlAccountStore, engine: AsyncEngine
) -> None:
    bodies = [{"benepia_user": "alice.kim", "benepia_password": f"pw-{i:02d}"} for i in range(50)]

    responses = await asyncio.gather(
        *(api.put("/users/alice/accounts/benepia", json=body) for body in bodies)
    )

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 201}, [r.text for r in responses if r.status_code >= 300]
    assert statuses.count(201) == 1, statuses
    assert len({r.json()["linked_at"] for r in responses}) == 1
    assert await rows(engine) == 1
    account = (await store.linked("alice"))["benepia"]
    assert isinstance(account, BenepiaAccount)
    assert isinstance(account.benepia_password, SecretStr)
    assert account.benepia_password.get_secret_value() in {b["benepia_password"] for b in bodies}

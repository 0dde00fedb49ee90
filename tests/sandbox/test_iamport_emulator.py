"""Tests of the iamport / Benepia emulator and the shared fault machinery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from app.sandbox.faults import Fault, FaultBook, Json, dump_json, pad_json
from app.sandbox.iamport import (
    LOGIN_FAILED_MESSAGE,
    MISSING_FIELDS_MESSAGE,
    IamportSandbox,
    create_iamport_app,
)

KEY = "imp_test_key"
SECRET = "imp-secret-do-not-echo"
PASSWORD = "benepia-pw-do-not-echo"
UNAUTHORIZED = {"code": -1, "message": "Unauthorized", "response": None}
T0 = 1_800_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sandbox(clock: FakeClock) -> IamportSandbox:
    box = IamportSandbox(imp_key=KEY, imp_secret=SECRET, clock=clock)
    box.add_account("alice", PASSWORD, 12000)
    return box


@pytest.fixture
async def client(sandbox: IamportSandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_iamport_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://iamport.test") as c:
        yield c


async def get_token(client: httpx.AsyncClient) -> dict[str, object]:
    resp = await client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET})
    assert resp.status_code == 200
    body = resp.json()
    assert body["code"] == 0
    assert body["message"] is None
    response: dict[str, object] = body["response"]
    return response


async def query_point(
    client: httpx.AsyncClient,
    token: object,
    user: str = "alice",
    password: str = PASSWORD,
    **channel: str,
) -> httpx.Response:
    payload = {"benepia_user": user, "benepia_password": password, **channel}
    return await client.post(
        "/benepia/point", json=payload, headers={"Authorization": f"Bearer {token}"}
    )


async def fresh_token(client: httpx.AsyncClient) -> object:
    return (await get_token(client))["access_token"]


# --- token endpoint ---


async def test_token_shape(client: httpx.AsyncClient) -> None:
    tok = await get_token(client)
    token = tok["access_token"]
    assert isinstance(token, str)
    assert len(token) == 40
    int(token, 16)
    assert tok["now"] == int(T0)
    assert tok["expired_at"] == int(T0) + 1800


async def test_token_reused_before_expiry(client: httpx.AsyncClient, clock: FakeClock) -> None:
    first = await get_token(client)
    clock.now += 1000
    second = await get_token(client)
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == first["expired_at"]
    assert second["now"] == int(T0) + 1000


async def test_token_extended_in_last_minute(client: httpx.AsyncClient, clock: FakeClock) -> None:
    first = await get_token(client)
    clock.now += 1800 - 30
    second = await get_token(client)
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == int(T0) + 1800 + 300
    clock.now += 10
    third = await get_token(client)
    assert third["expired_at"] == second["expired_at"]
    clock.now += 200
    resp = await query_point(client, first["access_token"])
    assert resp.json()["code"] == 0


async def test_new_token_after_expiry(client: httpx.AsyncClient, clock: FakeClock) -> None:
    first = await get_token(client)
    clock.now += 1800
    resp = await query_point(client, first["access_token"])
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED
    second = await get_token(client)
    assert second["access_token"] != first["access_token"]
    assert second["expired_at"] == int(T0) + 3600


async def test_expire_tokens_gives_401(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    assert sandbox.access_token == token
    sandbox.expire_tokens()
    assert sandbox.access_token is None
    resp = await query_point(client, token)
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED
    assert await fresh_token(client) != token


async def test_admin_expire_tokens_route(client: httpx.AsyncClient) -> None:
    token = await fresh_token(client)
    resp = await client.post("/__sandbox/expire-tokens")
    assert resp.status_code == 200
    assert (await query_point(client, token)).status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"imp_key": KEY, "imp_secret": "wrong"},
        {"imp_key": "wrong", "imp_secret": SECRET},
        {"imp_key": KEY},
        {},
        [KEY, SECRET],
        {"imp_key": KEY, "imp_secret": 12},
    ],
)
async def test_wrong_credentials_401(client: httpx.AsyncClient, payload: object) -> None:
    resp = await client.post("/users/getToken", json=payload)
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED


async def test_non_json_token_request_401(client: httpx.AsyncClient) -> None:
    resp = await client.post("/users/getToken", content=b"imp_key=x&imp_secret=y")
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED


async def test_secret_never_echoed(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    resp = await client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET})
    bad = await client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET + "x"})
    for r in (resp, bad):
        assert SECRET not in r.text
    assert SECRET not in repr(sandbox)
    assert PASSWORD not in repr(sandbox.accounts)


# --- Benepia point ---


@pytest.mark.parametrize(
    "channel", [{"channel_key": "channel-key-123"}, {"pg": "kcp.A52CY"}, {}], ids=str
)
async def test_point_success(
    client: httpx.AsyncClient, sandbox: IamportSandbox, channel: dict[str, str]
) -> None:
    resp = await query_point(client, await fresh_token(client), **channel)
    assert resp.status_code == 200
    assert resp.json() == {"code": 0, "message": "", "response": {"point": 12000}}
    record = sandbox.point_requests[-1]
    assert record.user == "alice"
    assert record.channel_key == channel.get("channel_key")
    assert record.pg == channel.get("pg")


@pytest.mark.parametrize(("user", "password"), [("alice", "nope"), ("bob", PASSWORD)])
async def test_point_login_rejected(client: httpx.AsyncClient, user: str, password: str) -> None:
    resp = await query_point(client, await fresh_token(client), user=user, password=password)
    assert resp.status_code == 200
    assert resp.json() == {"code": 1, "message": LOGIN_FAILED_MESSAGE, "response": None}
    assert password not in resp.text


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'"alice"',
        b'{"benepia_user": "alice"}',
        b'{"benepia_password": "x"}',
        b'{"benepia_user": "", "benepia_password": "x"}',
        b'{"benepia_user": 5, "benepia_password": "x"}',
        b"",
    ],
)
async def test_point_bad_body_400(client: httpx.AsyncClient, content: bytes) -> None:
    token = await fresh_token(client)
    resp = await client.post(
        "/benepia/point", content=content, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 400
    assert resp.json() == {"code": -1, "message": MISSING_FIELDS_MESSAGE, "response": None}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer"}, {"Authorization": "x y"}],
)
async def test_point_unauthorized(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    await fresh_token(client)
    payload = {"benepia_user": "alice", "benepia_password": PASSWORD}
    resp = await client.post("/benepia/point", json=payload, headers=headers)
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED


async def test_point_before_any_token_401(client: httpx.AsyncClient) -> None:
    assert (await query_point(client, "0" * 40)).status_code == 401


async def test_counters(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    await fresh_token(client)
    await query_point(client, token)
    assert sandbox.get_token_calls == 2
    assert sandbox.point_calls == 1


# --- fault knobs (shared code, exercised through /benepia/point) ---


async def test_fault_latency(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(latency=0.05))
    started = time.perf_counter()
    resp = await query_point(client, token)
    assert time.perf_counter() - started >= 0.05
    assert resp.json()["code"] == 0


async def test_fault_status_uses_envelope(
    client: httpx.AsyncClient, sandbox: IamportSandbox
) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(status=500))
    resp = await query_point(client, token)
    assert resp.status_code == 500
    assert resp.json() == {"code": -1, "message": "Internal Server Error", "response": None}


async def test_fault_body_and_content_type(
    client: httpx.AsyncClient, sandbox: IamportSandbox
) -> None:
    token = await fresh_token(client)
    sandbox.faults.set(
        "alice", Fault(status=502, body="<html>bad gateway</html>", content_type="text/html")
    )
    resp = await query_point(client, token)
    assert resp.status_code == 502
    assert resp.text == "<html>bad gateway</html>"
    assert resp.headers["content-type"].startswith("text/html")


async def test_fault_malformed(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(malformed=True))
    resp = await query_point(client, token)
    assert resp.status_code == 200
    assert resp.content.startswith(b'{"code":0')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


@pytest.mark.parametrize("size", [50, 60, 100_000])
async def test_fault_oversized(
    client: httpx.AsyncClient, sandbox: IamportSandbox, size: int
) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(oversized=size))
    resp = await query_point(client, token)
    assert resp.status_code == 200
    assert len(resp.content) == size
    body = resp.json()
    assert body["code"] == 0
    assert body["response"] == {"point": 12000}


async def test_fault_retry_after(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("*", Fault(status=503, retry_after=7))
    resp = await query_point(client, token)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["code"] == -1


async def test_fault_times_countdown(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(status=503, times=2))
    statuses = [(await query_point(client, token)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sandbox.faults.snapshot() == {}


async def test_fault_hang(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(hang=True))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(query_point(client, token), 0.2)


async def test_fault_key_then_wildcard(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    sandbox.add_account("bob", PASSWORD, 5)
    token = await fresh_token(client)
    sandbox.faults.set("alice", Fault(status=500))
    sandbox.faults.set("*", Fault(status=502))
    assert (await query_point(client, token)).status_code == 500
    assert (await query_point(client, token, user="bob")).status_code == 502


async def test_wildcard_spares_get_token(
    client: httpx.AsyncClient, sandbox: IamportSandbox
) -> None:
    sandbox.faults.set("*", Fault(status=500))
    await get_token(client)
    sandbox.faults.set("getToken", Fault(status=500, times=1))
    resp = await client.post("/users/getToken", json={"imp_key": KEY, "imp_secret": SECRET})
    assert resp.status_code == 500
    assert resp.json() == {"code": -1, "message": "Internal Server Error", "response": None}
    await get_token(client)


# --- admin routes ---


async def test_admin_set_fault_applies(client: httpx.AsyncClient) -> None:
    token = await fresh_token(client)
    resp = await client.post(
        "/__sandbox/faults", json={"key": "alice", "status": 503, "retry_after": 3, "times": 1}
    )
    assert resp.status_code == 200
    assert resp.json()["fault"]["status"] == 503
    first = await query_point(client, token)
    assert (first.status_code, first.headers["retry-after"]) == (503, "3")
    assert (await query_point(client, token)).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"status": 500},
        {"key": "", "status": 500},
        {"key": "a", "status": "500"},
        {"key": "a", "status": 700},
        {"key": "a", "status": 204},
        {"key": "a", "latency": -1},
        {"key": "a", "oversized": 0},
        {"key": "a", "times": 0},
        {"key": "a", "hang": "yes"},
        {"key": "a", "malformed": True, "body": "x"},
        {"key": "a", "content_type": "text/html\r\nX-Evil: 1"},
        {"key": "a", "colour": "red"},
        [1, 2],
    ],
)
async def test_admin_rejects_bad_fault(
    client: httpx.AsyncClient, sandbox: IamportSandbox, payload: object
) -> None:
    resp = await client.post("/__sandbox/faults", json=payload)
    assert resp.status_code == 422
    assert resp.json()["detail"]
    assert sandbox.faults.snapshot() == {}


async def test_admin_rejects_non_json(client: httpx.AsyncClient) -> None:
    resp = await client.post("/__sandbox/faults", content=b"{nope")
    assert resp.status_code == 422


async def test_admin_clear_stats_reset(client: httpx.AsyncClient, sandbox: IamportSandbox) -> None:
    token = await fresh_token(client)
    await query_point(client, token)
    await client.post("/__sandbox/faults", json={"key": "alice", "status": 500})
    await client.post("/__sandbox/faults", json={"key": "bob", "latency": 0.01})

    stats = (await client.get("/__sandbox/stats")).json()
    assert stats["calls"] == {"POST /users/getToken": 1, "POST /benepia/point": 1}
    assert set(stats["faults"]) == {"alice", "bob"}

    assert (await client.delete("/__sandbox/faults", params={"key": "bob"})).json() == {
        "cleared": 1
    }
    assert (await client.delete("/__sandbox/faults")).json() == {"cleared": 1}
    assert sandbox.faults.snapshot() == {}

    await client.post("/__sandbox/faults", json={"key": "*", "status": 500})
    assert (await client.post("/__sandbox/reset")).status_code == 200
    stats = (await client.get("/__sandbox/stats")).json()
    assert stats == {"calls": {"POST /users/getToken": 0, "POST /benepia/point": 0}, "faults": {}}
    assert (await query_point(client, token)).status_code == 200


# --- fault helpers ---


def test_fault_validates_in_python() -> None:
    with pytest.raises(ValueError, match="status"):
        Fault(status=99)
    with pytest.raises(ValueError, match="latency"):
        Fault(latency=float("nan"))


def test_fault_book_take() -> None:
    book = FaultBook()
    assert book.take("k") is None
    book.set("*", Fault(status=500))
    book.set("k", Fault(status=502, times=1))
    assert book.take("k") == Fault(status=502, times=1)
    assert book.take("k") == Fault(status=500)
    assert book.take("k", wildcard=False) is None
    assert book.clear() == 1


@pytest.mark.parametrize(
    ("body", "size"), [(b"{}", 40), (b'{"a":1}', 8), (b'{"a":1}', 500), (b"[1]", 10)]
)
def test_pad_json_keeps_json_valid(body: bytes, size: int) -> None:
    padded = pad_json(body, size)
    assert len(padded) == size
    assert json.loads(padded) is not None


def test_dump_json_decimal_digits() -> None:
    value: Json = {"a": Decimal("250.0"), "b": [Decimal("1234.56"), "한"], "c": None}
    assert dump_json(value) == '{"a":250.0,"b":[1234.56,"한"],"c":null}'.encode()
    with pytest.raises(ValueError, match="non-finite"):
        dump_json(Decimal("NaN"))

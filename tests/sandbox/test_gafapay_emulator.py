"""Tests of the GafaPay emulator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import jwt
import pytest

from app.sandbox.faults import Fault
from app.sandbox.gafapay import (
    USER_POINTS_PATH,
    GafapaySandbox,
    create_gafapay_app,
    normalize_id,
)

COMPANY = "59388167894b4d10a04fe5da3b8a2104"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"
USER = "fb8f09210e0f46b7b4262d77f5b6c273"
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
SHORT_USER = "00000000000000000000000000000abc"
UNAUTHORIZED = b'{"status":"error","code":401,"message":"UNAUTHORIZED"}'


@pytest.fixture
def sandbox() -> GafapaySandbox:
    box = GafapaySandbox(company_id=COMPANY, tokens={JWT})
    box.add_account(USER, CURRENCY, Decimal("250.0"))
    box.add_account(SHORT_USER, CURRENCY, Decimal("1234.56"), user_type=3)
    return box


@pytest.fixture
async def client(sandbox: GafapaySandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_gafapay_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://gafapay.test") as c:
        yield c


def headers(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "authorization": f"Token {JWT}",
        "companyid": COMPANY,
        "requestid": "b35d332f-131e-44c1-892f-8322e022da74",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def get_points(
    client: httpx.AsyncClient,
    user_id: str | None = USER,
    currency_id: str | None = CURRENCY,
    **header_overrides: str | None,
) -> httpx.Response:
    params = {k: v for k, v in (("user_id", user_id), ("currency_id", currency_id)) if v}
    return await client.get(USER_POINTS_PATH, params=params, headers=headers(**header_overrides))


async def test_success_keeps_decimal_text(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    resp = await get_points(client)
    assert resp.status_code == 200
    assert b'"points":250.0,' in resp.content
    body = json.loads(resp.content, parse_float=Decimal)
    record_id = sandbox.accounts[(USER, CURRENCY)].record_id
    assert body == {
        "success": 1,
        "error": [],
        "data": {
            "user_points": {
                "id": record_id,
                "user_id": USER,
                "user_type": 2,
                "points": Decimal("250.0"),
                "currency_id": CURRENCY,
            }
        },
    }


async def test_fractional_points_and_short_ids(client: httpx.AsyncClient) -> None:
    resp = await get_points(client, user_id="ABC")
    assert b'"points":1234.56,' in resp.content
    assert resp.json()["data"]["user_points"]["user_type"] == 3
    same = await get_points(client, user_id="0ABC", currency_id=CURRENCY.upper())
    assert same.content == resp.content


@pytest.mark.parametrize(
    "auth",
    [None, "Token wrong", f"Bearer {JWT}", "Token", f"Token {JWT}x"],
)
async def test_unauthorized_body_shape(client: httpx.AsyncClient, auth: str | None) -> None:
    resp = await get_points(client, authorization=auth)
    assert resp.status_code == 401
    assert resp.content == UNAUTHORIZED


async def test_revoked_token_401(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    sandbox.tokens.discard(JWT)
    assert (await get_points(client)).status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"companyid": "deadbeef"}, "Invalid company"),
        ({"companyid": None}, "Invalid company"),
        ({"requestid": None}, "requestid header is required"),
        ({"user_id": None}, "user_id and currency_id are required"),
        ({"currency_id": None}, "user_id and currency_id are required"),
        ({"user_id": "ffff"}, "User points not found"),
        ({"user_id": "not-hex"}, "User points not found"),
        ({"currency_id": "1" * 33}, "User points not found"),
    ],
)
async def test_failures_have_no_data_key(
    client: httpx.AsyncClient, kwargs: dict[str, str | None], message: str
) -> None:
    resp = await get_points(client, **kwargs)
    assert resp.status_code == 200
    assert resp.json() == {"success": 0, "error": [message]}


async def test_records_request_ids_and_calls(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    await get_points(client, requestid="req-1")
    await get_points(client, requestid="req-2")
    await get_points(client, requestid=None)
    assert sandbox.last_request_ids == ["req-1", "req-2"]
    assert sandbox.points_calls == 3


def test_normalize_id() -> None:
    assert normalize_id("00AbC") == "abc"
    assert normalize_id("0000") == "0"
    assert normalize_id("") is None
    assert normalize_id("xyz") is None
    assert normalize_id("a" * 33) is None


def test_add_account_validates(sandbox: GafapaySandbox) -> None:
    with pytest.raises(TypeError):
        sandbox.add_account(USER, CURRENCY, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hex"):
        sandbox.add_account("user-1", CURRENCY, 1)
    with pytest.raises(ValueError, match="finite"):
        sandbox.add_account(USER, CURRENCY, "Infinity")
    with pytest.raises(ValueError, match="decimal"):
        sandbox.add_account(USER, CURRENCY, "lots")
    assert sandbox.add_account(USER, CURRENCY, 7).points == Decimal(7)


# --- faults ---


async def test_fault_key_is_normalized_user_id(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    sandbox.faults.set("abc", Fault(status=503, retry_after=2, times=1))
    resp = await get_points(client, user_id="0ABC")
    assert (resp.status_code, resp.headers["retry-after"]) == (503, "2")
    assert resp.json() == {"success": 0, "error": ["Service Unavailable"]}
    assert (await get_points(client, user_id="abc")).status_code == 200


async def test_wildcard_fault(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    sandbox.faults.set("*", Fault(status=500, times=2))
    assert (await get_points(client, user_id=None)).status_code == 500
    assert (await get_points(client)).status_code == 500
    assert (await get_points(client)).status_code == 200


async def test_status_401_fault_uses_gafapay_shape(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    sandbox.faults.set(USER, Fault(status=401))
    resp = await get_points(client)
    assert resp.status_code == 401
    assert resp.content == UNAUTHORIZED


async def test_malformed_and_oversized(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    sandbox.faults.set(USER, Fault(malformed=True, times=1))
    resp = await get_points(client)
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)
    sandbox.faults.set(USER, Fault(oversized=2_000_000, times=1))
    resp = await get_points(client)
    assert len(resp.content) == 2_000_000
    assert resp.json()["data"]["user_points"]["points"] == 250.0


async def test_latency_and_body(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    sandbox.faults.set(USER, Fault(latency=0.05, body='{"success":1}', times=1))
    started = time.perf_counter()
    resp = await get_points(client)
    assert time.perf_counter() - started >= 0.05
    assert resp.content == b'{"success":1}'


async def test_hang(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    sandbox.faults.set("*", Fault(hang=True))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(get_points(client), 0.2)


async def test_admin_routes(client: httpx.AsyncClient, sandbox: GafapaySandbox) -> None:
    resp = await client.post("/__sandbox/faults", json={"key": "*", "status": 502, "times": 1})
    assert resp.status_code == 200
    assert (await get_points(client)).status_code == 502
    assert (await client.post("/__sandbox/faults", json={"key": "*", "oops": 1})).status_code == 422

    stats = (await client.get("/__sandbox/stats")).json()
    assert stats == {"calls": {f"GET {USER_POINTS_PATH}": 1}, "faults": {}}

    await client.post("/__sandbox/faults", json={"key": USER, "status": 500})
    await get_points(client)
    assert (await client.post("/__sandbox/reset")).status_code == 200
    assert sandbox.points_calls == 0
    assert sandbox.last_request_ids == []
    assert (await get_points(client)).status_code == 200


# --- customer session tokens ------------------------------------------------------------------


async def test_a_customer_token_reads_its_own_points_only(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    token = sandbox.customer_token(USER.upper())
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == USER.upper()
    assert claims["roles"] == ["ROLE_CUSTOMER"]
    own = await get_points(client, authorization=f"Token {token}")
    assert own.status_code == 200
    assert own.json()["success"] == 1
    other = await get_points(client, user_id=SHORT_USER, authorization=f"Token {token}")
    assert other.status_code == 200
    assert other.json() == {"success": 0, "error": ["Access denied"]}


async def test_a_customer_token_it_did_not_sign_is_401(
    client: httpx.AsyncClient, sandbox: GafapaySandbox
) -> None:
    forged = jwt.encode({"sub": USER, "roles": ["ROLE_CUSTOMER"]}, "x" * 32, algorithm="HS256")
    expired = sandbox.customer_token(USER, lifetime=-10)
    for token in (forged, expired):
        resp = await get_points(client, authorization=f"Token {token}")
        assert resp.status_code == 401
        assert resp.content == UNAUTHORIZED


async def test_customer_tokens_are_issued_over_http(client: httpx.AsyncClient) -> None:
    minted = await client.post("/__sandbox/customer_tokens", json={"user_id": USER})
    assert minted.status_code == 200
    resp = await get_points(client, authorization=f"Token {minted.json()['token']}")
    assert resp.json()["success"] == 1
    for bad in ({"user_id": "not hex"}, {}, [1]):
        refused = await client.post("/__sandbox/customer_tokens", json=bad)
        assert refused.status_code == 422

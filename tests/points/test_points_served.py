"""End to end over 127.0.0.1: gateway (aiohttp transport) -> real uvicorn emulators."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.sandbox.demo import ALICE_GAFAPAY, DEMO_CURRENCY, DEMO_GAFAPAY_TOKEN
from app.sandbox.iamport import LOGIN_FAILED_MESSAGE
from tests.support.servers import CLIENT_TIMEOUT, Stack, assert_problem, entries, set_fault

pytestmark = pytest.mark.integration

GAFAPAY_UNIT = f"gafapay:{DEMO_CURRENCY}"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=CLIENT_TIMEOUT) as c:
        yield c


# --- the demo users ------------------------------------------------------------------------------


async def test_alice_gets_both_balances(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/alice/points")

    assert resp.status_code == 200, resp.text
    assert resp.headers["x-points-complete"] == "true"
    body = resp.json()
    assert body["user_id"] == "alice"
    assert body["complete"] is True
    assert [b["provider"] for b in body["balances"]] == ["benepia", "gafapay"]
    benepia, gafapay = body["balances"]
    assert benepia["status"] == "ok"
    assert benepia["points"] == "12000"
    assert benepia["unit"] == "benepia_point"
    assert benepia["error"] is None
    assert gafapay["status"] == "ok"
    assert gafapay["points"] == "250.0"
    assert gafapay["unit"] == GAFAPAY_UNIT
    assert gafapay["error"] is None


async def test_bob_has_only_gafapay(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/bob/points")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["complete"] is True
    assert [(b["provider"], b["status"], b["points"]) for b in body["balances"]] == [
        ("gafapay", "ok", "1234.56")
    ]


async def test_carol_benepia_rejected_gafapay_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/carol/points")

    assert resp.status_code == 200, resp.text
    assert resp.headers["x-points-complete"] == "false"
    body = resp.json()
    assert body["complete"] is False
    by_name = entries(body)
    benepia = by_name["benepia"]
    assert benepia["status"] == "error"
    assert benepia["points"] is None
    assert benepia["error"]["code"] == "provider_rejected"
    assert benepia["error"]["status"] == 422
    assert benepia["error"]["upstream_code"] == "1"
    assert benepia["error"]["detail"] == LOGIN_FAILED_MESSAGE
    assert by_name["gafapay"]["status"] == "ok"
    assert by_name["gafapay"]["points"] == "80"


async def test_nobody_has_no_balances(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/nobody/points")

    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": "nobody", "complete": True, "balances": []}


# --- the single route and the filter -------------------------------------------------------------


async def test_single_provider_route(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/alice/points/gafapay")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["provider"] == "gafapay"
    assert body["status"] == "ok"
    assert body["points"] == "250.0"
    assert body["unit"] == GAFAPAY_UNIT


async def test_single_route_carol_rejected_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/carol/points/benepia")

    body = assert_problem(resp, 422, "provider_rejected")
    assert body["provider"] == "benepia"
    assert body["upstream_code"] == "1"
    assert body["detail"] == LOGIN_FAILED_MESSAGE


async def test_unknown_provider_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/alice/points/nope")

    assert_problem(resp, 404, "unknown_provider")


async def test_unlinked_provider_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/bob/points/benepia")

    assert_problem(resp, 404, "account_not_linked")


async def test_providers_filter_narrows_the_answer(client: httpx.AsyncClient, stack: Stack) -> None:
    resp = await client.get("/users/alice/points", params={"providers": "benepia"})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [b["provider"] for b in body["balances"]] == ["benepia"]
    assert body["balances"][0]["points"] == "12000"
    assert stack.gafapay.points_calls == 0


async def test_providers_filter_with_unknown_name_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/users/alice/points", params={"providers": "benepia,nope"})

    assert_problem(resp, 404, "unknown_provider")


# --- faults through the real HTTP stack ----------------------------------------------------------


async def test_hanging_gafapay_times_out_and_benepia_still_answers(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await set_fault(stack.gafapay_url, ALICE_GAFAPAY, hang=True, times=1)

    resp = await client.get("/users/alice/points")

    assert resp.status_code == 200, resp.text
    assert resp.headers["x-points-complete"] == "false"
    by_name = entries(resp.json())
    assert by_name["benepia"]["status"] == "ok"
    assert by_name["benepia"]["points"] == "12000"
    assert by_name["gafapay"]["status"] == "error"
    assert by_name["gafapay"]["error"]["code"] == "upstream_timeout"
    assert by_name["gafapay"]["error"]["status"] == 504
    again = await client.get("/users/alice/points")
    assert again.json()["complete"] is True, again.text


async def test_hanging_get_token_times_out_benepia_only(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    async with httpx.AsyncClient(base_url=stack.iamport_url, timeout=CLIENT_TIMEOUT) as admin:
        assert (await admin.post("/__sandbox/expire-tokens")).status_code == 200
    await set_fault(stack.iamport_url, "getToken", hang=True, times=1)

    resp = await client.get("/users/alice/points")

    assert resp.status_code == 200, resp.text
    by_name = entries(resp.json())
    assert by_name["benepia"]["error"]["code"] == "upstream_timeout"
    assert by_name["gafapay"]["status"] == "ok"
    # Recovery: once the hung getToken is given up on, a new token is fetched. (A request that
    # arrives while the first, hung refresh is still in flight joins it and shares its failure.)
    for _ in range(50):
        again = await client.get("/users/alice/points")
        if again.json()["complete"] is True:
            break
        await asyncio.sleep(0.1)
    assert again.json()["complete"] is True, again.text
    assert stack.iamport.get_token_calls == 2


@pytest.mark.parametrize(
    ("provider", "knobs", "code"),
    [
        ("benepia", {"status": 500}, "upstream_error"),
        ("gafapay", {"status": 500}, "upstream_error"),
        ("benepia", {"malformed": True}, "upstream_invalid_response"),
        ("gafapay", {"malformed": True}, "upstream_invalid_response"),
        ("benepia", {"oversized": 2 * 1024 * 1024}, "upstream_invalid_response"),
        ("gafapay", {"oversized": 2 * 1024 * 1024}, "upstream_invalid_response"),
    ],
)
async def test_fault_maps_to_its_code(
    client: httpx.AsyncClient, stack: Stack, provider: str, knobs: dict[str, object], code: str
) -> None:
    if provider == "benepia":
        await set_fault(stack.iamport_url, "alice.kim", times=1, **knobs)
    else:
        await set_fault(stack.gafapay_url, ALICE_GAFAPAY, times=1, **knobs)

    resp = await client.get("/users/alice/points")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["complete"] is False
    by_name = entries(body)
    other = "gafapay" if provider == "benepia" else "benepia"
    assert by_name[other]["status"] == "ok"
    assert by_name[provider]["status"] == "error"
    assert by_name[provider]["error"]["code"] == code
    assert by_name[provider]["error"]["status"] == 502
    # The pooled connections are still good for the next request.
    again = await client.get("/users/alice/points")
    assert again.status_code == 200, again.text
    assert again.json()["complete"] is True


async def test_every_provider_failing_alike_keeps_their_status(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await set_fault(stack.iamport_url, "*", status=500, times=1)
    await set_fault(stack.gafapay_url, "*", status=500, times=1)

    resp = await client.get("/users/alice/points")

    body = assert_problem(resp, 502, "upstream_error")
    assert resp.headers["x-points-complete"] == "false"
    assert [b["error"]["code"] for b in body["balances"]] == ["upstream_error"] * 2


async def test_every_provider_rate_limited_gives_the_smallest_retry_after(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await set_fault(stack.iamport_url, "alice.kim", status=429, retry_after=7, times=1)
    await set_fault(stack.gafapay_url, ALICE_GAFAPAY, status=429, retry_after=3, times=1)

    resp = await client.get("/users/alice/points")

    body = assert_problem(resp, 503, "upstream_rate_limited")
    assert resp.headers["retry-after"] == "3"
    assert body["retry_after"] == 3


async def test_rate_limited_single_route_carries_retry_after(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await set_fault(stack.gafapay_url, ALICE_GAFAPAY, status=429, retry_after=5, times=1)

    resp = await client.get("/users/alice/points/gafapay")

    body = assert_problem(resp, 503, "upstream_rate_limited")
    assert resp.headers["retry-after"] == "5"
    assert body["retry_after"] == 5
    assert body["upstream_status"] == 429


async def test_expired_iamport_token_is_refreshed_once(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    first = await client.get("/users/alice/points")
    assert first.status_code == 200, first.text
    token_calls = stack.iamport.get_token_calls
    point_calls = stack.iamport.point_calls

    async with httpx.AsyncClient(base_url=stack.iamport_url, timeout=CLIENT_TIMEOUT) as admin:
        expired = await admin.post("/__sandbox/expire-tokens")
    assert expired.status_code == 200
    second = await client.get("/users/alice/points")

    assert second.status_code == 200, second.text
    assert second.json()["complete"] is True
    assert entries(second.json())["benepia"]["points"] == "12000"
    assert stack.iamport.get_token_calls == token_calls + 1
    # The refused call and its one retry.
    assert stack.iamport.point_calls == point_calls + 2


async def test_revoked_gafapay_token_is_auth_failed(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    stack.gafapay.tokens.discard(DEMO_GAFAPAY_TOKEN)
    try:
        resp = await client.get("/users/alice/points/gafapay")
    finally:
        stack.gafapay.tokens.add(DEMO_GAFAPAY_TOKEN)

    body = assert_problem(resp, 502, "upstream_auth_failed")
    assert body["provider"] == "gafapay"
    assert body["upstream_status"] == 401
    assert DEMO_GAFAPAY_TOKEN not in resp.text


async def test_connection_refused_is_unreachable_not_timeout(refused_gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=refused_gateway_url, timeout=CLIENT_TIMEOUT) as c:
        resp = await c.get("/users/alice/points")
        single = await c.get("/users/alice/points/benepia")

    assert resp.status_code == 200, resp.text
    by_name = entries(resp.json())
    assert by_name["benepia"]["status"] == "error"
    assert by_name["benepia"]["error"]["code"] == "upstream_unreachable"
    assert by_name["gafapay"]["status"] == "ok"
    assert_problem(single, 502, "upstream_unreachable")


# --- request ids ---------------------------------------------------------------------------------


async def test_callers_request_id_reaches_gafapay_and_is_echoed(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    rid = str(uuid.uuid4())

    resp = await client.get("/users/bob/points", headers={"X-Request-ID": rid})

    assert resp.status_code == 200, resp.text
    assert resp.headers["x-request-id"] == rid
    assert stack.gafapay.last_request_ids == [rid]


async def test_minted_request_id_reaches_gafapay_and_is_echoed(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    resp = await client.get("/users/bob/points")

    assert resp.status_code == 200, resp.text
    rid = resp.headers["x-request-id"]
    assert str(uuid.UUID(rid)) == rid
    assert stack.gafapay.last_request_ids == [rid]


async def test_malformed_request_id_is_replaced_everywhere(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    resp = await client.get("/users/bob/points", headers={"X-Request-ID": "not valid!"})

    assert resp.status_code == 200, resp.text
    rid = resp.headers["x-request-id"]
    assert rid != "not valid!"
    assert stack.gafapay.last_request_ids == [rid]

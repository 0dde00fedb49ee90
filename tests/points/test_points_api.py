"""The merged and single-provider points routes, through the API, with respx upstreams."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import (
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    mock_upstreams,
    serve_in_process,
)
from tests.support.problems import assert_problem, strings

BALANCE_KEYS = {"provider", "status", "points", "unit", "as_of", "cached", "stale", "error"}


def incomplete_balances(r: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 200 merged answer marked incomplete with Benepia ok: its Benepia and GafaPay entries."""
    assert r.status_code == 200, r.text
    assert r.headers["x-points-complete"] == "false"
    body = r.json()
    assert body["complete"] is False
    benepia, gafapay = body["balances"]
    assert benepia["status"] == "ok"
    return benepia, gafapay


def rate_limited(seconds: int) -> httpx.Response:
    return httpx.Response(429, headers={"retry-after": str(seconds)}, text="slow down")


# --- the merged answer ---------------------------------------------------------------------


async def test_alice_all_ok(client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-points-complete"] == "true"
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["user_id"] == "alice"
    assert body["complete"] is True
    balances = body["balances"]
    assert [b["provider"] for b in balances] == ["benepia", "gafapay"]
    for balance in balances:
        assert set(balance) == BALANCE_KEYS
        assert balance["status"] == "ok"
        assert balance["error"] is None
        assert isinstance(balance["points"], str)
        assert balance["cached"] is False
        assert balance["stale"] is False
        assert isinstance(balance["as_of"], str)
    assert [b["points"] for b in balances] == ["12000", "250.0"]
    assert balances[0]["unit"] == "benepia_point"
    assert balances[1]["unit"] == "gafapay:1f1519903ed240578f071aa45cb479f2"
    assert '"points":"12000"' in r.text
    assert '"points":"250.0"' in r.text


async def test_one_failing_provider_gives_incomplete_200(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=httpx.Response(500, text="Internal Server Error"))
    benepia, gafapay = incomplete_balances(await client.get("/users/alice/points"))
    assert benepia["error"] is None
    assert set(gafapay) == BALANCE_KEYS
    assert gafapay["status"] == "error"
    assert gafapay["points"] is None
    error = gafapay["error"]
    assert error["code"] == "upstream_error"
    assert error["status"] == 502
    assert error["provider"] == "gafapay"
    assert error["upstream_status"] == 500
    assert error["type"] == "urn:points-gateway:problem:upstream_error"


async def test_all_failing_with_same_status_keeps_it(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, benepia=httpx.ReadTimeout, gafapay=httpx.ConnectTimeout)
    r = await client.get("/users/alice/points")
    body = assert_problem(r, 504, "upstream_timeout")
    assert r.headers["x-points-complete"] == "false"
    assert "retry-after" not in r.headers
    assert body["complete"] is False
    assert body["user_id"] == "alice"
    assert body["instance"] == "/users/alice/points"
    assert [b["provider"] for b in body["balances"]] == ["benepia", "gafapay"]
    for balance in body["balances"]:
        assert balance["status"] == "error"
        assert balance["points"] is None
        assert balance["error"]["code"] == "upstream_timeout"
        assert balance["error"]["provider"] == balance["provider"]


async def test_all_failing_with_mixed_statuses_is_502(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    rejected = httpx.Response(200, json={"code": 1, "message": "로그인 실패", "response": None})
    mock_upstreams(upstream, benepia=rejected, gafapay=httpx.Response(503, text="down"))
    r = await client.get("/users/alice/points")
    body = assert_problem(r, 502, "providers_failed")
    codes = {b["provider"]: b["error"]["code"] for b in body["balances"]}
    assert codes == {"benepia": "provider_rejected", "gafapay": "upstream_error"}
    statuses = {b["provider"]: b["error"]["status"] for b in body["balances"]}
    assert statuses == {"benepia": 422, "gafapay": 502}


async def test_all_rate_limited_is_503_with_smallest_retry_after(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, benepia=rate_limited(9), gafapay=rate_limited(4))
    r = await client.get("/users/alice/points")
    body = assert_problem(r, 503, "upstream_rate_limited")
    assert r.headers["retry-after"] == "4"
    assert body["retry_after"] == 4
    waits = {b["provider"]: b["error"]["retry_after"] for b in body["balances"]}
    assert waits == {"benepia": 9, "gafapay": 4}


async def test_user_without_linked_programs(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    r = await client.get("/users/dave/points")
    assert r.status_code == 200, r.text
    assert r.headers["x-points-complete"] == "true"
    assert r.json() == {"user_id": "dave", "complete": True, "balances": []}
    assert tokens.call_count == point.call_count == gafa.call_count == 0


# --- ?providers= ---------------------------------------------------------------------------


async def test_providers_filter_narrows(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    r = await client.get("/users/alice/points", params={"providers": "gafapay"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["provider"] for b in body["balances"]] == ["gafapay"]
    assert body["complete"] is True
    assert point.call_count == 0
    assert tokens.call_count == 0
    assert gafa.call_count == 1


async def test_providers_filter_keeps_stable_order_and_dedupes(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points", params={"providers": "gafapay, benepia,gafapay"})
    assert r.status_code == 200, r.text
    assert [b["provider"] for b in r.json()["balances"]] == ["benepia", "gafapay"]


async def test_providers_filter_unknown_name(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points", params={"providers": "nope"})
    assert_problem(r, 404, "unknown_provider")


@pytest.mark.parametrize("value", ["", ",", "gafapay,", " , "])
async def test_providers_filter_empty_names(
    client: httpx.AsyncClient, upstream: respx.MockRouter, value: str
) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points", params={"providers": value})
    assert_problem(r, 422, "invalid_request")


async def test_providers_filter_over_512_characters_is_422_as_fastapi_words_it(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    # BalanceRoute reads the filter itself; its error is the one Query(max_length=512) gave.
    mock_upstreams(upstream)
    fits = await client.get("/users/alice/points", params={"providers": "gafapay" + " " * 505})
    assert fits.status_code == 200, fits.text
    r = await client.get("/users/alice/points", params={"providers": "gafapay" + " " * 506})
    body = assert_problem(r, 422, "invalid_request")
    assert body["errors"] == [
        {
            "loc": ["query", "providers"],
            "msg": "String should have at most 512 characters",
            "type": "string_too_long",
        }
    ]


async def test_providers_filter_on_unlinked_program(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/bob/points", params={"providers": "benepia"})
    body = assert_problem(r, 404, "account_not_linked")
    assert [b["provider"] for b in body["balances"]] == ["benepia"]
    assert body["balances"][0]["error"]["code"] == "account_not_linked"


# --- the single-provider route --------------------------------------------------------------


async def test_single_program_ok(client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points/benepia")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == BALANCE_KEYS
    assert body["provider"] == "benepia"
    assert body["status"] == "ok"
    assert body["points"] == "12000"
    assert body["error"] is None


async def test_single_program_not_linked(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    tokens, point, _ = mock_upstreams(upstream)
    r = await client.get("/users/bob/points/benepia")
    body = assert_problem(r, 404, "account_not_linked")
    assert body["provider"] == "benepia"
    assert tokens.call_count == point.call_count == 0


async def test_single_program_unknown(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream)
    r = await client.get("/users/alice/points/nope")
    assert_problem(r, 404, "unknown_provider")


@pytest.mark.parametrize(
    ("provider", "reply", "status", "code"),
    [
        ("gafapay", httpx.Response(500, text="oops"), 502, "upstream_error"),
        ("gafapay", httpx.ReadTimeout, 504, "upstream_timeout"),
        ("gafapay", httpx.ConnectError, 502, "upstream_unreachable"),
        ("gafapay", httpx.Response(200, text="{"), 502, "upstream_invalid_response"),
        (
            "gafapay",
            httpx.Response(200, json={"success": 0, "error": ["no"]}),
            422,
            "provider_rejected",
        ),
        ("benepia", httpx.Response(500, json={"code": -1, "message": "x"}), 502, "upstream_error"),
        ("benepia", rate_limited(7), 503, "upstream_rate_limited"),
    ],
)
async def test_single_program_failure_is_its_mapped_problem(
    client: httpx.AsyncClient,
    upstream: respx.MockRouter,
    provider: str,
    reply: Any,
    status: int,
    code: str,
) -> None:
    mock_upstreams(upstream, **{provider: reply})
    r = await client.get(f"/users/alice/points/{provider}")
    body = assert_problem(r, status, code)
    assert body["provider"] == provider
    assert body["instance"] == f"/users/alice/points/{provider}"
    if status == 503:
        assert r.headers["retry-after"] == "7"


# --- user id validation ----------------------------------------------------------------------

INVALID_USER_IDS = [
    pytest.param("a%20b", "a b", id="space"),
    pytest.param("a" * 129, "a" * 129, id="129-chars"),
    pytest.param(".alice", ".alice", id="leading-dot"),
    pytest.param("%C3%A4lice", "\u00e4lice", id="unicode"),
    pytest.param("a%00b", "a\x00b", id="nul"),
]


@pytest.mark.parametrize(("raw", "decoded"), INVALID_USER_IDS)
@pytest.mark.parametrize("suffix", ["", "/benepia"])
async def test_invalid_user_id(
    client: httpx.AsyncClient, upstream: respx.MockRouter, raw: str, decoded: str, suffix: str
) -> None:
    tokens, point, gafa = mock_upstreams(upstream)
    r = await client.get(f"/users/{raw}/points{suffix}")
    body = assert_problem(r, 422, "invalid_request")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors
    for error in errors:
        assert set(error) == {"loc", "msg", "type"}
        assert "input" not in error
    assert ["path", "user_id"] in [e["loc"] for e in errors]
    assert not [text for text in strings(errors) if decoded in text]
    assert decoded not in body["detail"]
    assert tokens.call_count == point.call_count == gafa.call_count == 0


@pytest.mark.parametrize(("raw", "decoded"), INVALID_USER_IDS)
async def test_invalid_user_id_instance_is_a_uri_reference(
    client: httpx.AsyncClient, raw: str, decoded: str
) -> None:
    r = await client.get(f"/users/{raw}/points")
    assert r.status_code == 422
    instance = r.json()["instance"]
    # RFC 9457: `instance` is a URI reference, so what the caller sent comes back percent-encoded.
    assert instance == f"/users/{raw}/points"
    assert instance.isascii()
    assert all(c.isprintable() and c != " " for c in instance)


async def test_user_id_with_allowed_punctuation(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    user = "Kim.min-su_01@example.com"
    accounts = {user: {"benepia": {"benepia_user": "kms", "benepia_password": "pw"}}}
    mock_upstreams(upstream)
    async with serve_in_process(gateway_app(accounts=accounts)) as client:
        r = await client.get(f"/users/{user}/points")
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == user
        assert [b["status"] for b in r.json()["balances"]] == ["ok"]
        r = await client.get(f"/users/{user}/points/benepia")
        assert r.status_code == 200, r.text


async def test_user_id_of_128_chars_is_valid(client: httpx.AsyncClient) -> None:
    r = await client.get("/users/" + "a" * 128 + "/points")
    assert r.status_code == 200, r.text
    assert r.json()["balances"] == []


# --- concurrency and the deadline ----------------------------------------------------------


async def test_providers_are_asked_concurrently(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    spans: dict[str, tuple[float, float]] = {}

    async def slow_gafapay(request: httpx.Request) -> httpx.Response:
        start = time.monotonic()
        await asyncio.sleep(0.3)
        spans["gafapay"] = (start, time.monotonic())
        return gafapay_ok()

    async def quick_benepia(request: httpx.Request) -> httpx.Response:
        start = time.monotonic()
        await asyncio.sleep(0)
        spans["benepia"] = (start, time.monotonic())
        return benepia_ok()

    mock_upstreams(upstream, benepia=quick_benepia, gafapay=slow_gafapay)
    r = await asyncio.wait_for(client.get("/users/alice/points"), 5)
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    (b_start, b_end), (g_start, g_end) = spans["benepia"], spans["gafapay"]
    # The spans overlap: neither call waited for the other to finish.
    assert b_start < g_end
    assert g_start < b_end


async def test_request_deadline_cuts_slow_provider(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    cancelled = asyncio.Event()

    async def hanging_gafapay(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return gafapay_ok()

    mock_upstreams(upstream, gafapay=hanging_gafapay)
    async with serve_in_process(gateway_app(make_settings(request_deadline=0.3))) as client:
        r = await asyncio.wait_for(client.get("/users/alice/points"), 1.5)
    benepia, gafapay = incomplete_balances(r)
    assert benepia["points"] == "12000"
    assert gafapay["status"] == "error"
    assert gafapay["error"]["code"] == "upstream_timeout"
    assert gafapay["error"]["status"] == 504
    assert gafapay["error"]["provider"] == "gafapay"
    assert cancelled.is_set()


# --- unexpected failures ---------------------------------------------------------------------


async def test_unexpected_adapter_exception_is_internal_error(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_upstreams(upstream, gafapay=RuntimeError("boom: secret internals"))
    r = await client.get("/users/alice/points")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["complete"] is False
    gafapay = body["balances"][1]
    assert gafapay["status"] == "error"
    assert gafapay["error"]["code"] == "internal_error"
    assert gafapay["error"]["status"] == 500
    assert "boom" not in r.text
    assert "Traceback" not in r.text

    r = await client.get("/users/alice/points/gafapay")
    problem = assert_problem(r, 500, "internal_error")
    assert problem["provider"] == "gafapay"
    assert "boom" not in r.text
    assert "Traceback" not in r.text
    assert "RuntimeError" not in r.text


# --- routing, request ids, other routes --------------------------------------------------------


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/healthz"), ("DELETE", "/users/alice/points")]
)
async def test_wrong_method(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path)
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize("rid", ["abc-123", "req.1:2_3", "A" * 128])
async def test_valid_request_id_is_echoed(client: httpx.AsyncClient, rid: str) -> None:
    r = await client.get("/nope", headers={"x-request-id": rid})
    assert r.headers["x-request-id"] == rid
    assert r.json()["request_id"] == rid


@pytest.mark.parametrize("rid", ["has spaces", "a" * 200, "-leading-dash", "semi;colon"])
async def test_invalid_request_id_is_replaced(client: httpx.AsyncClient, rid: str) -> None:
    r = await client.get("/nope", headers={"x-request-id": rid})
    echoed = r.headers["x-request-id"]
    assert echoed != rid
    assert str(uuid.UUID(echoed)) == echoed
    assert r.json()["request_id"] == echoed
    assert rid not in r.text


async def test_request_id_reaches_gafapay_as_uuid(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    _, _, gafa = mock_upstreams(upstream)
    rid = str(uuid.uuid4())
    r = await client.get("/users/alice/points/gafapay", headers={"x-request-id": rid})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == rid
    assert gafa.calls.last.request.headers["requestid"] == rid


async def test_providers_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/providers")
    assert r.status_code == 200, r.text
    providers = r.json()["providers"]
    assert [p["name"] for p in providers] == ["benepia", "gafapay"]
    for p in providers:
        assert set(p) == {"name", "display_name", "unit", "circuit"}
        assert p["circuit"] == {"state": "closed", "consecutive_failures": 0, "retry_after": None}
        assert p["display_name"]
        assert p["unit"]
    assert providers[0]["unit"] == "benepia_point"


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}

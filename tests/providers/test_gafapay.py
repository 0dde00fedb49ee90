"""The GafaPay adapter through the HTTP API: one test per error-table row it can produce."""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import partial

import httpx
import pytest
import respx

from tests.conftest import (
    ABSENT,
    ALICE_GAFAPAY,
    COMPANY_ID,
    CURRENCY,
    GAFAPAY_TOKEN,
    GAFAPAY_URL,
    AppFactory,
    assert_upstream_problem,
    customer_token,
    gafapay_ok,
    make_settings,
    serve_in_process,
)

PATH = "/users/alice/points/gafapay"
OVER_CAP = 1_048_576 + 1


def mock_gafapay(upstream: respx.MockRouter, answer: httpx.Response | None = None) -> respx.Route:
    return upstream.get(GAFAPAY_URL).mock(return_value=answer or gafapay_ok())


def raw(body: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer with exactly this body text (numbers stay as written)."""
    return httpx.Response(
        status,
        content=body.encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


def user_points(
    points: str = "250.0",
    user_id: str = ALICE_GAFAPAY,
    currency_id: str = CURRENCY,
    user_type: int = 2,
) -> httpx.Response:
    record = (
        f'{{"id":"fd5fd822caa8418d9c0bbbbfc54e0b21","user_id":"{user_id}",'
        f'"user_type":{user_type},"points":{points},"currency_id":"{currency_id}"}}'
    )
    return raw(f'{{"success":1,"error":[],"data":{{"user_points":{record}}}}}')


# GafaPay has no error codes of its own: its problems never carry `upstream_code`.
assert_problem = partial(assert_upstream_problem, provider="gafapay", upstream_code=ABSENT)


# --- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("250.0", "250.0"),
        ("1234.56", "1234.56"),
        ("123456789012.123456", "123456789012.123456"),
        ("0", "0"),
        ("1e3", "1000"),
        ("1.5E+2", "150"),
    ],
)
async def test_success_keeps_exact_decimals(
    client: httpx.AsyncClient, upstream: respx.MockRouter, sent: str, shown: str
) -> None:
    mock_gafapay(upstream, gafapay_ok(sent))

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["points"] == shown
    assert body["unit"] == f"gafapay:{CURRENCY}"
    assert body["error"] is None


async def test_request_carries_query_and_headers(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = mock_gafapay(upstream)

    assert (await client.get(PATH)).status_code == 200

    sent = route.calls.last.request
    assert dict(sent.url.params) == {"user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
    assert sent.headers["authorization"] == f"Token {GAFAPAY_TOKEN}"
    assert sent.headers["companyid"] == COMPANY_ID
    assert GAFAPAY_TOKEN not in str(sent.url)
    uuid.UUID(sent.headers["requestid"])


async def test_requestid_is_the_callers_uuid(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = mock_gafapay(upstream)
    caller_id = str(uuid.uuid4())

    response = await client.get(PATH, headers={"x-request-id": caller_id})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == caller_id
    assert route.calls.last.request.headers["requestid"] == caller_id


async def test_requestid_is_the_minted_request_id(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = mock_gafapay(upstream)

    response = await client.get(PATH)

    assert route.calls.last.request.headers["requestid"] == response.headers["x-request-id"]


async def test_requestid_is_a_fresh_uuid_for_a_non_uuid_caller_id(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = mock_gafapay(upstream)

    first = await client.get(PATH, headers={"x-request-id": "req-123"})
    second = await client.get(PATH, headers={"x-request-id": "req-123"})

    assert first.status_code == second.status_code == 200
    assert first.headers["x-request-id"] == "req-123"
    sent = [call.request.headers["requestid"] for call in route.calls]
    for value in sent:
        assert str(uuid.UUID(value)) == value
    assert sent[0] != sent[1]


async def test_short_hex_ids_are_accepted(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    accounts = {"dave": {"gafapay": {"gafapay_user_id": "a", "currency_id": "F"}}}
    # GafaPay may write the same ids with leading zeros and another case.
    route = mock_gafapay(upstream, user_points("5", user_id="0A", currency_id="0f"))

    async with serve_in_process(gateway_app(accounts=accounts)) as client:
        response = await client.get("/users/dave/points/gafapay")

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "5"
    assert response.json()["unit"] == "gafapay:f"
    assert dict(route.calls.last.request.url.params) == {"user_id": "a", "currency_id": "f"}


@pytest.mark.parametrize("user_type", [0, 1, 4, 7, 99, 100000])
async def test_any_user_type_is_accepted(
    client: httpx.AsyncClient, upstream: respx.MockRouter, user_type: int
) -> None:
    mock_gafapay(upstream, user_points("10.5", user_type=user_type))

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "10.5"


async def test_unknown_fields_are_ignored(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    body = {
        "success": 1,
        "error": [],
        "trace": {"x": 1},
        "data": {
            "user_points": {
                "user_id": ALICE_GAFAPAY,
                "currency_id": CURRENCY,
                "points": 3,
                "frozen_points": "1.0",
                "tier": None,
            },
            "promotions": [],
        },
    }
    mock_gafapay(upstream, httpx.Response(200, json=body))

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "3"


async def test_accounts_own_token_is_preferred(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    token = customer_token(ALICE_GAFAPAY)
    own = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY, "token": token}
    route = mock_gafapay(upstream)

    async with serve_in_process(gateway_app(accounts={"alice": {"gafapay": own}})) as client:
        assert (await client.get(PATH)).status_code == 200

    assert route.calls.last.request.headers["authorization"] == f"Token {token}"


# --- provider_rejected -------------------------------------------------------------------------


async def test_success_0_without_data_is_rejected_with_messages_joined(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_gafapay(upstream, raw('{"success":0,"error":["用户不存在","Invalid currency"]}'))

    body = assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=200)

    assert body["detail"] == "用户不存在; Invalid currency"


@pytest.mark.parametrize(
    "text", ['{"success":0,"error":[]}', '{"success":0}', '{"success":0,"error":[null,""]}']
)
async def test_success_0_without_messages_has_a_detail(
    client: httpx.AsyncClient, upstream: respx.MockRouter, text: str
) -> None:
    mock_gafapay(upstream, raw(text))

    body = assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=200)

    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_success_0_on_a_4xx_is_rejected(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_gafapay(upstream, raw('{"success":0,"error":["bad user_id"]}', status=400))

    body = assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=400)

    assert body["detail"] == "bad user_id"


async def test_success_0_on_a_499_is_rejected_and_on_a_500_is_an_upstream_error(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    route = mock_gafapay(upstream, raw('{"success":0,"error":["nope"]}', status=499))
    assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=499)

    route.mock(return_value=raw('{"success":0,"error":["nope"]}', status=500))
    assert_problem(await client.get(PATH), 502, "upstream_error", upstream_status=500)


async def test_only_the_first_20_messages_are_passed_on(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    messages = [f"m{i}" for i in range(25)]
    mock_gafapay(upstream, raw(json.dumps({"success": 0, "error": messages})))

    body = assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=200)

    assert body["detail"] == "; ".join(messages[:20])


async def test_joined_messages_are_cut_at_1000_characters(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    messages = ["x" * 400, "y" * 400, "z" * 400]
    mock_gafapay(upstream, raw(json.dumps({"success": 0, "error": messages})))

    body = assert_problem(await client.get(PATH), 422, "provider_rejected", upstream_status=200)

    assert body["detail"] == "; ".join(messages)[:1000]
    assert len(body["detail"]) == 1000


# --- upstream_auth_failed ----------------------------------------------------------------------


async def test_401_is_auth_failed(client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    route = mock_gafapay(
        upstream,
        httpx.Response(401, json={"status": "error", "code": 401, "message": "UNAUTHORIZED"}),
    )

    assert_problem(await client.get(PATH), 502, "upstream_auth_failed", upstream_status=401)
    assert route.call_count == 1


# --- upstream_rate_limited ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7), (429, None, 1), (503, "30", 30)],
    ids=["429-with", "429-without", "503-with"],
)
async def test_backoff_is_503_with_retry_after(
    client: httpx.AsyncClient,
    upstream: respx.MockRouter,
    status: int,
    retry_after: str | None,
    expected: int,
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    mock_gafapay(upstream, httpx.Response(status, headers=headers, text="slow down"))

    response = await client.get(PATH)

    body = assert_problem(response, 503, "upstream_rate_limited", upstream_status=status)
    assert response.headers["retry-after"] == str(expected)
    assert body["retry_after"] == expected


# --- upstream_error ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, text="<html>Internal Server Error</html>"),
        httpx.Response(500, json={"success": 0, "error": ["database down"]}),
        httpx.Response(502, text=""),
        httpx.Response(503, text="unavailable"),
        httpx.Response(504, text="gateway timeout"),
    ],
    ids=["html-500", "success-0-500", "502", "503-without-retry-after", "504"],
)
async def test_5xx_is_upstream_error(
    client: httpx.AsyncClient, upstream: respx.MockRouter, answer: httpx.Response
) -> None:
    mock_gafapay(upstream, answer)

    assert_problem(
        await client.get(PATH), 502, "upstream_error", upstream_status=answer.status_code
    )


# --- upstream_timeout / upstream_unreachable ---------------------------------------------------


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout])
async def test_transport_timeout_is_504(
    client: httpx.AsyncClient, upstream: respx.MockRouter, error: type[Exception]
) -> None:
    mock_gafapay(upstream).mock(side_effect=error)

    assert_problem(await client.get(PATH), 504, "upstream_timeout")


async def test_provider_timeout_fires_when_upstream_hangs(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return gafapay_ok()

    mock_gafapay(upstream).mock(side_effect=hang)
    settings = make_settings()
    settings.providers["gafapay"] = {**settings.providers["gafapay"], "timeout": 0.2}

    async with serve_in_process(gateway_app(settings)) as client:
        assert_problem(await client.get(PATH), 504, "upstream_timeout")


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError])
async def test_transport_failure_is_unreachable(
    client: httpx.AsyncClient, upstream: respx.MockRouter, error: type[Exception]
) -> None:
    mock_gafapay(upstream).mock(side_effect=error)

    assert_problem(await client.get(PATH), 502, "upstream_unreachable")


# --- upstream_invalid_response -----------------------------------------------------------------

OTHER_USER = "0123456789abcdef0123456789abcdef"
ALICE_RECORD = f'{{"points":1,"user_id":"{ALICE_GAFAPAY}","currency_id":"{CURRENCY}"}}'

INVALID_BODIES = {
    "not-json": "OK",
    "json-array": "[1]",
    # A complete record for alice: only `success` is wrong, so only its check can refuse them.
    "success-missing": f'{{"error":[],"data":{{"user_points":{ALICE_RECORD}}}}}',
    "success-string": f'{{"success":"1","error":[],"data":{{"user_points":{ALICE_RECORD}}}}}',
    "success-bool": f'{{"success":true,"error":[],"data":{{"user_points":{ALICE_RECORD}}}}}',
    "success-2": f'{{"success":2,"error":[],"data":{{"user_points":{ALICE_RECORD}}}}}',
    "success-float": f'{{"success":1.0,"error":[],"data":{{"user_points":{ALICE_RECORD}}}}}',
    "data-missing": '{"success":1,"error":[]}',
    "data-null": '{"success":1,"error":[],"data":null}',
    "user-points-list": '{"success":1,"error":[],"data":{"user_points":[{"points":1}]}}',
    "points-string": '{"success":1,"error":[],"data":{"user_points":{"points":"250.0"}}}',
    "points-missing": '{"success":1,"error":[],"data":{"user_points":{"user_id":"'
    + ALICE_GAFAPAY
    + '"}}}',
    "points-null": '{"success":1,"error":[],"data":{"user_points":{"points":null}}}',
    "points-bool": '{"success":1,"error":[],"data":{"user_points":{"points":true}}}',
    "points-nan": '{"success":1,"error":[],"data":{"user_points":{"points":NaN}}}',
    "points-infinity": '{"success":1,"error":[],"data":{"user_points":{"points":Infinity}}}',
    "points-too-precise": '{"success":1,"error":[],"data":{"user_points":{"points":0.000000001}}}',
    "points-too-large": '{"success":1,"error":[],"data":{"user_points":{"points":1e18}}}',
}


@pytest.mark.parametrize("name", list(INVALID_BODIES))
async def test_broken_contract_is_invalid_response(
    client: httpx.AsyncClient, upstream: respx.MockRouter, name: str
) -> None:
    mock_gafapay(upstream, raw(INVALID_BODIES[name]))

    assert_problem(await client.get(PATH), 502, "upstream_invalid_response", upstream_status=200)


@pytest.mark.parametrize(
    "answer",
    [
        user_points("999999", user_id=OTHER_USER),
        user_points("999999", currency_id=OTHER_USER),
        raw(
            '{"success":1,"error":[],"data":{"user_points":'
            f'{{"points":999999,"user_id":7,"currency_id":"{CURRENCY}"}}}}}}'
        ),
    ],
    ids=["other-user", "other-currency", "user-id-not-a-string"],
)
async def test_another_users_balance_is_never_shown(
    client: httpx.AsyncClient, upstream: respx.MockRouter, answer: httpx.Response
) -> None:
    mock_gafapay(upstream, answer)

    response = await client.get(PATH)

    assert_problem(response, 502, "upstream_invalid_response", upstream_status=200)
    assert "999999" not in response.text


@pytest.mark.parametrize(
    "answer",
    [
        raw('{"success":1,"data":{"user_points":{"points":1}},"pad":"' + "x" * OVER_CAP + '"}'),
        raw(
            '{"success":1,"error":[],"data":{"user_points":{"points":1}}}',
            headers={"content-length": str(OVER_CAP)},
        ),
    ],
    ids=["huge-body", "content-length-over-cap"],
)
async def test_oversized_answer_is_invalid_response(
    client: httpx.AsyncClient, upstream: respx.MockRouter, answer: httpx.Response
) -> None:
    mock_gafapay(upstream, answer)

    assert_problem(await client.get(PATH), 502, "upstream_invalid_response", upstream_status=200)


async def test_request_id_round_trip_in_problem(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_gafapay(upstream, raw("{}"))
    caller_id = str(uuid.uuid4())

    response = await client.get(PATH, headers={"x-request-id": caller_id})

    body = assert_problem(response, 502, "upstream_invalid_response", upstream_status=200)
    assert body["request_id"] == caller_id
    assert json.loads(response.text)["instance"] == PATH

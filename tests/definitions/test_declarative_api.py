"""A provider from a definition, served through the unchanged API: answers, mappings, secrets."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.definitions.conftest import (
    ACME,
    ACME_YAML,
    API_KEY,
    PIN,
    ServeDefinitions,
    acme_ok,
)

BALANCE = f"{ACME}/v1/members/1001/balance"
ACCOUNT = {"member_id": "1001", "member_pin": PIN}


async def link(client: httpx.AsyncClient, account: dict[str, str] = ACCOUNT) -> None:
    linked = await client.put("/users/dave/accounts/acme", json=account)
    assert linked.status_code == 201, linked.text


async def test_the_balance_and_its_details(serve_definitions: ServeDefinitions) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        route = gw.upstream.get(BALANCE).mock(return_value=acme_ok(expiring_points=200))
        await link(gw.client)
        answer = await gw.client.get("/users/dave/points")
    assert answer.status_code == 200, answer.text
    entry = answer.json()["balances"][0]
    assert entry["provider"] == "acme"
    assert (entry["points"], entry["unit"]) == ("1234.50", "acme_point")
    assert entry["details"] == {"expiring": "200"}
    sent = route.calls.last.request
    assert sent.url.params["currency"] == "KRW"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["x-member-pin"] == PIN
    assert sent.headers["x-request-id"] == answer.headers["x-request-id"]


async def test_details_left_out_when_the_provider_gives_none(
    serve_definitions: ServeDefinitions,
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(return_value=acme_ok())
        await link(gw.client)
        entry = (await gw.client.get("/users/dave/points/acme")).json()
    assert "details" not in entry


@pytest.mark.parametrize(
    ("points", "expected"),
    [("1234.50", "1234.50"), ('"1234.50"', "1234.50"), ("12000", "12000"), ("1e3", "1000")],
)
async def test_numbers_are_read_exactly(
    serve_definitions: ServeDefinitions, points: str, expected: str
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(return_value=acme_ok(points=points))
        await link(gw.client)
        entry = (await gw.client.get("/users/dave/points/acme")).json()
    assert entry["points"] == expected


@pytest.mark.parametrize(
    "points", ['"12,000"', "true", "NaN", "1e999", '"1e3"', "[1]", '" 12"', "null", '"12."']
)
async def test_anything_but_a_plain_number_is_an_invalid_response(
    serve_definitions: ServeDefinitions, points: str
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(return_value=acme_ok(points=points))
        await link(gw.client)
        answer = await gw.client.get("/users/dave/points/acme")
    assert answer.status_code == 502, answer.text
    assert answer.json()["code"] == "upstream_invalid_response"


def json_answer(status: int, body: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers={"content-type": "application/json", **headers}
    )


MAPPINGS = {
    "rule: member not found": (
        json_answer(404, '{"status":"MEMBER_NOT_FOUND","message":"No member 1001"}'),
        422,
        "provider_rejected",
    ),
    "rule on a 200": (
        json_answer(200, '{"status":"PIN_MISMATCH","message":"Wrong PIN"}'),
        422,
        "provider_rejected",
    ),
    "success condition not met": (
        json_answer(200, '{"status":"PENDING"}'),
        502,
        "upstream_invalid_response",
    ),
    "another member": (acme_ok(member="2002"), 502, "upstream_invalid_response"),
    "not JSON": (json_answer(200, "<html>"), 502, "upstream_invalid_response"),
    "HTML declared": (
        httpx.Response(200, content=b"{}", headers={"content-type": "text/html"}),
        502,
        "upstream_invalid_response",
    ),
    "default 429": (json_answer(429, "{}", **{"retry-after": "9"}), 503, "upstream_rate_limited"),
    "default 503 with Retry-After": (
        json_answer(503, "{}", **{"retry-after": "4"}),
        503,
        "upstream_rate_limited",
    ),
    "default 401": (json_answer(401, "{}"), 502, "upstream_auth_failed"),
    "default 403": (json_answer(403, "{}"), 502, "upstream_auth_failed"),
    "default 404 without the rule's body": (json_answer(404, "{}"), 502, "upstream_error"),
    "default 500": (json_answer(500, "{}"), 502, "upstream_error"),
    "default 302": (httpx.Response(302, headers={"location": "/x"}), 502, "upstream_error"),
}


@pytest.mark.parametrize("case", list(MAPPINGS), ids=list(MAPPINGS))
async def test_every_default_mapping_and_rule(
    serve_definitions: ServeDefinitions, case: str
) -> None:
    response, status, code = MAPPINGS[case]
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(return_value=response)
        await link(gw.client)
        answer = await gw.client.get("/users/dave/points/acme")
    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert problem["code"] == code
    assert problem["provider"] == "acme"
    if code == "upstream_rate_limited":
        assert int(answer.headers["retry-after"]) in (4, 9)


async def test_a_rule_passes_the_providers_text_and_code_on(
    serve_definitions: ServeDefinitions,
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(
            return_value=json_answer(404, '{"status":"MEMBER_NOT_FOUND","message":"회원 없음"}')
        )
        await link(gw.client)
        problem = (await gw.client.get("/users/dave/points/acme")).json()
    assert problem["detail"] == "회원 없음"
    assert problem["upstream_code"] == "MEMBER_NOT_FOUND"
    assert problem["upstream_status"] == 404


async def test_an_echoed_secret_never_reaches_an_answer_or_a_log(
    serve_definitions: ServeDefinitions, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f'{{"status":"MEMBER_NOT_FOUND","message":"pin {PIN} and key {API_KEY} refused"}}'
    caplog.set_level(logging.DEBUG)
    async with serve_definitions(ACME_YAML) as gw:
        gw.upstream.get(BALANCE).mock(return_value=json_answer(404, echo))
        await link(gw.client)
        answers = [
            await gw.client.get("/users/dave/points/acme"),
            await gw.client.post("/users/dave/points/acme", json=ACCOUNT),
            await gw.client.get("/users/dave/accounts"),
        ]
    for answer in answers:
        assert PIN not in answer.text
        assert API_KEY not in answer.text
    assert answers[0].json()["detail"] == "pin [REDACTED] and key [REDACTED] refused"
    assert PIN not in caplog.text
    assert API_KEY not in caplog.text


async def test_the_definitions_operations_and_account_schema_are_documented(
    serve_definitions: ServeDefinitions,
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        doc = (await gw.client.get("/openapi.json")).json()
    ops = {
        op["operationId"]
        for path in ("/users/{user_id}/points/acme", "/users/{user_id}/accounts/acme")
        for op in doc["paths"][path].values()
    }
    assert ops == {
        "get_acme_points",
        "query_acme_points_once",
        "link_acme_account",
        "unlink_acme_account",
    }
    schema = doc["components"]["schemas"]["AcmeAccount"]
    assert schema["required"] == ["member_id", "member_pin"]
    assert schema["properties"]["member_pin"]["writeOnly"] is True
    assert schema["properties"]["member_id"]["pattern"] == "^[0-9]{4,20}$"
    assert API_KEY not in str(doc)


@pytest.mark.parametrize(
    "account",
    [
        {"member_id": "12", "member_pin": PIN},
        {"member_id": "1001", "member_pin": "12"},
        {"member_id": "1001"},
        {"member_id": "1001", "member_pin": PIN, "extra": "x"},
        {"member_id": "1001", "member_pin": "pin\u00e9-unicode"},
    ],
    ids=["id-pattern", "pin-too-short", "pin-missing", "extra-field", "pin-not-header-safe"],
)
async def test_accounts_are_validated_against_the_definition(
    serve_definitions: ServeDefinitions, account: dict[str, str]
) -> None:
    async with serve_definitions(ACME_YAML) as gw:
        answer = await gw.client.put("/users/dave/accounts/acme", json=account)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "invalid_request"
        assert not gw.upstream.calls


async def test_the_definitions_cache_ttl_is_used(serve_definitions: ServeDefinitions) -> None:
    # cache_ttl 0 in the definition; a provider TTL in the settings wins over it.
    async with serve_definitions(ACME_YAML, cache={"ttl": 0, "stale_if_error": 0}) as gw:
        route = gw.upstream.get(BALANCE).mock(return_value=acme_ok())
        await link(gw.client)
        for _ in range(2):
            await gw.client.get("/users/dave/points/acme")
        assert route.call_count == 2
    overrides = {"ttl": 0, "stale_if_error": 0, "provider_ttl": {"acme": 60}}
    async with serve_definitions(ACME_YAML, cache=overrides) as gw:
        route = gw.upstream.get(BALANCE).mock(return_value=acme_ok())
        await link(gw.client)
        answers = [await gw.client.get("/users/dave/points/acme") for _ in range(2)]
        assert route.call_count == 1
        assert answers[1].json()["cached"] is True

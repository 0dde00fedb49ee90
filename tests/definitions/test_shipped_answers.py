"""Each shipped definition against its emulator: the documented answer and the documented errors.

The emulators (app/sandbox/loyalty/) answer what each platform's public documentation shows; the
gateway must turn every answer into the same balance or problem a code adapter would.
"""

from __future__ import annotations

import httpx
import pytest

from tests.definitions.shipped import CASES, REFUSED_KEY, Case, gateway_settings, serve_shipped
from tests.support.problems import assert_problem

SHIPPED = pytest.mark.parametrize("case", CASES, ids=str)
CHECKED = pytest.mark.parametrize("case", [c for c in CASES if c.someone_else], ids=str)


def assert_no_secret(case: Case, response: httpx.Response) -> None:
    shown = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    for secret in (*case.secrets, REFUSED_KEY):
        assert secret not in shown


@SHIPPED
async def test_the_documented_answer_is_the_balance(case: Case) -> None:
    async with serve_shipped(case) as gw:
        response = await gw.client.get(f"/users/alice/points/{case.name}")
        sent = gw.upstream.requests
    assert response.status_code == 200, response.text
    balance = response.json()
    assert balance["provider"] == case.name
    assert balance["status"] == "ok"
    assert balance["points"] == case.points
    assert balance["unit"] == case.unit
    assert balance.get("details") == case.details
    assert_no_secret(case, response)
    assert len(sent) == 1
    # Credentials travel in headers, never in the URL.
    for secret in case.secrets:
        assert secret not in str(sent[0].url)


@SHIPPED
async def test_every_linked_balance_includes_it(case: Case) -> None:
    async with serve_shipped(case) as gw:
        response = await gw.client.get("/users/alice/points")
    assert response.status_code == 200, response.text
    assert response.json()["complete"] is True
    assert [b["points"] for b in response.json()["balances"]] == [case.points]


@SHIPPED
async def test_an_unknown_customer_is_refused_with_the_providers_message(case: Case) -> None:
    async with serve_shipped(case) as gw:
        response = await gw.client.get(f"/users/eve/points/{case.name}")
    body = assert_problem(response, 422, "provider_rejected")
    assert body["provider"] == case.name
    assert body["detail"] == case.not_found
    assert body["upstream_status"] == 404
    assert body.get("upstream_code") == case.upstream_code
    assert_no_secret(case, response)


@SHIPPED
async def test_a_refused_merchant_key_is_the_gateways_auth_failure(case: Case) -> None:
    async with serve_shipped(case, gateway_settings(case, case.refused)) as gw:
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    body = assert_problem(response, 502, "upstream_auth_failed")
    assert body["upstream_status"] == 401
    assert_no_secret(case, response)


@SHIPPED
async def test_rate_limited_asks_the_caller_to_retry(case: Case) -> None:
    async with serve_shipped(case) as gw:
        # As the platform answers: none of them documents a Retry-After (Yotpo sends
        # ratelimit-reset), so the gateway asks for its default of one second.
        await gw.fault(status=429, times=1)
        bare = await gw.client.get(f"/users/alice/points/{case.name}")
        await gw.fault(status=429, retry_after=7, times=1)
        timed = await gw.client.get(f"/users/alice/points/{case.name}")
    assert assert_problem(bare, 503, "upstream_rate_limited")["upstream_status"] == 429
    assert bare.headers["retry-after"] == "1"
    assert_problem(timed, 503, "upstream_rate_limited")
    assert timed.headers["retry-after"] == "7"
    assert_no_secret(case, bare)


@SHIPPED
async def test_a_malformed_body_is_an_invalid_response(case: Case) -> None:
    async with serve_shipped(case) as gw:
        await gw.fault(malformed=True)
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    assert_problem(response, 502, "upstream_invalid_response")
    assert case.points not in response.text


@SHIPPED
@pytest.mark.parametrize(
    "body",
    ['{"unrelated": true}', "[]", '"300"', '{"points_balance": "12,000"}'],
    ids=["no-balance", "list", "string", "grouped"],
)
async def test_an_answer_without_a_plausible_balance_is_invalid(case: Case, body: str) -> None:
    async with serve_shipped(case) as gw:
        await gw.fault(status=200, body=body)
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    assert_problem(response, 502, "upstream_invalid_response")


@SHIPPED
async def test_a_server_error_is_an_upstream_error(case: Case) -> None:
    async with serve_shipped(case) as gw:
        await gw.fault(status=500)
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    assert assert_problem(response, 502, "upstream_error")["upstream_status"] == 500


@CHECKED
async def test_an_answer_about_another_customer_is_refused(case: Case) -> None:
    assert case.someone_else is not None
    async with serve_shipped(case) as gw:
        await gw.fault(status=200, body=case.someone_else.decode())
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    body = assert_problem(response, 502, "upstream_invalid_response")
    assert "another account" in body["detail"]


@SHIPPED
async def test_a_secret_echoed_by_the_provider_is_masked(case: Case) -> None:
    echoed = f"bad request from {case.secrets[0]}"
    bodies = {
        "smile_io": {"error": {"message": echoed}},
        "square_loyalty": {"errors": [{"code": "NOT_FOUND", "detail": echoed}]},
        "talon_one": {"message": echoed},
        "yotpo": {"error": echoed},
    }
    async with serve_shipped(case) as gw:
        await gw.fault(status=404, body=httpx.Response(200, json=bodies[case.name]).text)
        response = await gw.client.get(f"/users/alice/points/{case.name}")
    assert_problem(response, 422, "provider_rejected")
    assert_no_secret(case, response)

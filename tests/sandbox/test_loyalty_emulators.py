"""The loyalty-platform emulators answer their documented examples and errors, and take faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette

from app.sandbox.loyalty import smile_io, square_loyalty, talon_one, yotpo
from app.sandbox.loyalty.members import LoyaltySandbox


@asynccontextmanager
async def client_of(
    sandbox: LoyaltySandbox, build: Callable[[LoyaltySandbox], Starlette]
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as c:
        yield c


SMILE_AUTH = {"authorization": f"Bearer {smile_io.SMILE_SANDBOX_KEY}"}
SQUARE_AUTH = {"authorization": f"Bearer {square_loyalty.SQUARE_SANDBOX_TOKEN}"}
TALON_AUTH = {"authorization": f"ApiKey-v1 {talon_one.TALON_SANDBOX_KEY}"}
YOTPO_AUTH = {"x-guid": yotpo.YOTPO_SANDBOX_GUID, "x-api-key": yotpo.YOTPO_SANDBOX_KEY}


async def test_smile_answers_the_documented_customer_and_error_object() -> None:
    sandbox = smile_io.smile_sandbox()
    async with client_of(sandbox, smile_io.create_smile_app) as c:
        ok = await c.get("/v1/customers/304169228", headers=SMILE_AUTH)
        missing = await c.get("/v1/customers/1", headers=SMILE_AUTH)
        refused = await c.get("/v1/customers/304169228", headers={"authorization": "Bearer x"})
    customer = ok.json()["customer"]
    assert (customer["id"], customer["points_balance"], customer["email"]) == (
        304169228,
        300,
        "jane@doe.com",
    )
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "request_id"}
    assert refused.status_code == 401
    assert sandbox.balance_calls == 3


async def test_square_answers_the_documented_account_and_errors_list() -> None:
    async with client_of(square_loyalty.square_sandbox(), square_loyalty.create_square_app) as c:
        path = f"/v2/loyalty/accounts/{square_loyalty.DOCUMENTED_ACCOUNT}"
        ok = await c.get(path, headers={**SQUARE_AUTH, "square-version": "2025-10-16"})
        missing = await c.get("/v2/loyalty/accounts/nope", headers=SQUARE_AUTH)
        refused = await c.get(path)
    assert ok.json()["loyalty_account"]["balance"] == 10
    assert ok.headers["square-version"] == "2025-10-16"
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "NOT_FOUND"
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["category"] == "AUTHENTICATION_ERROR"


async def test_talon_one_answers_the_documented_balances_for_its_program_only() -> None:
    sandbox = talon_one.talon_sandbox()
    sandbox.add("customer2", Decimal("12.5"))
    async with client_of(sandbox, talon_one.create_talon_app) as c:
        ok = await c.get("/v1/loyalty_programs/33/profile/customer1/balances", headers=TALON_AUTH)
        fraction = await c.get(
            "/v1/loyalty_programs/33/profile/customer2/balances", headers=TALON_AUTH
        )
        other = await c.get("/v1/loyalty_programs/9/profile/customer1/balances", headers=TALON_AUTH)
        refused = await c.get("/v1/loyalty_programs/33/profile/customer1/balances")
    assert ok.json()["balance"]["activePoints"] == 286
    assert ok.json()["balance"]["pendingPoints"] == 50
    assert b'"activePoints":12.5' in fraction.content
    assert other.status_code == 404
    assert other.json()["StatusCode"] == 404
    assert refused.status_code == 401


async def test_yotpo_finds_emails_without_case_and_takes_query_credentials() -> None:
    async with client_of(yotpo.yotpo_sandbox(), yotpo.create_yotpo_app) as c:
        by_header = await c.get(
            "/api/v2/customers", params={"customer_email": "JANE@doe.com"}, headers=YOTPO_AUTH
        )
        by_query = await c.get(
            "/api/v2/customers",
            params={
                "customer_email": "jane@doe.com",
                "guid": yotpo.YOTPO_SANDBOX_GUID,
                "api_key": yotpo.YOTPO_SANDBOX_KEY,
            },
        )
        missing = await c.get(
            "/api/v2/customers", params={"customer_email": "x@y.z"}, headers=YOTPO_AUTH
        )
    assert by_header.json()["points_balance"] == 23710
    assert by_query.status_code == 200
    assert missing.status_code == 404


async def test_faults_go_through_the_admin_route_and_keep_the_documented_bodies() -> None:
    sandbox = yotpo.yotpo_sandbox()
    async with client_of(sandbox, yotpo.create_yotpo_app) as c:
        installed = await c.post(
            "/__sandbox/faults", json={"key": "jane@doe.com", "status": 429, "times": 1}
        )
        limited = await c.get(
            "/api/v2/customers", params={"customer_email": "jane@doe.com"}, headers=YOTPO_AUTH
        )
        again = await c.get(
            "/api/v2/customers", params={"customer_email": "jane@doe.com"}, headers=YOTPO_AUTH
        )
        stats = (await c.get("/__sandbox/stats")).json()
        await c.post("/__sandbox/reset")
    assert installed.status_code == 200
    assert limited.status_code == 429
    assert limited.headers["ratelimit-reset"] == yotpo.RATE_LIMIT_RESET
    assert "retry-after" not in limited.headers
    assert again.status_code == 200
    assert stats["calls"] == {yotpo.FETCH_CUSTOMER: 2}
    assert sandbox.balance_calls == 0


def test_points_are_never_floats() -> None:
    with pytest.raises(TypeError):
        smile_io.smile_sandbox().add("1", 1.5)  # type: ignore[arg-type]

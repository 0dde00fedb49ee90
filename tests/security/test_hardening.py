"""Request caps, response headers, CORS, error bodies without internals, and log redaction."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from app.security.log_redaction import RedactingFilter, redact
from tests.conftest import BENEPIA_URL, GAFAPAY_URL, TOKEN_URL, benepia_ok, token_ok
from tests.security.conftest import (
    ALICE_BENEPIA,
    ServeGateway,
    assert_problem,
    bearer,
    echo_gafapay,
    mock_providers,
    secure_settings,
    user_token,
)

MAX_BODY = 1024
MAX_HEADERS = 2048
CAPPED = {"max_body_bytes": MAX_BODY, "max_header_bytes": MAX_HEADERS}
PUT_ALICE = "/users/alice/accounts/benepia"
INTERNALS = ("Traceback", "app/", ".py", 'File "', "RuntimeError", "line ", "site-packages")


def oversized_account() -> bytes:
    body = json.dumps({**ALICE_BENEPIA, "padding": "x" * (MAX_BODY * 2)}).encode()
    assert len(body) > MAX_BODY
    return body


# --- body and header caps ---------------------------------------------------------------------


async def test_declared_body_over_the_cap_is_413(serve_gateway: ServeGateway) -> None:
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        before = await gw.store.accounts("alice")
        response = await gw.client.put(
            PUT_ALICE,
            content=oversized_account(),
            headers={**bearer(user_token("alice")), "content-type": "application/json"},
        )
        assert_problem(response, 413, "payload_too_large")
        assert await gw.store.accounts("alice") == before
        assert gw.upstream.calls.call_count == 0


async def test_declared_body_over_the_cap_is_413_before_authentication(
    serve_gateway: ServeGateway,
) -> None:
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        response = await gw.client.put(PUT_ALICE, content=oversized_account())
    assert_problem(response, 413, "payload_too_large")


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        await asyncio.sleep(0)
        yield body[start : start + size]


async def test_chunked_body_over_the_cap_is_413(serve_gateway: ServeGateway) -> None:
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        before = await gw.store.accounts("alice")
        request = gw.client.build_request(
            "PUT",
            PUT_ALICE,
            content=chunks(oversized_account()),
            headers={**bearer(user_token("alice")), "content-type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = await gw.client.send(request)
        assert await gw.store.accounts("alice") == before
        assert gw.upstream.calls.call_count == 0
        assert_problem(response, 413, "payload_too_large")


async def test_chunked_body_under_the_cap_is_accepted(serve_gateway: ServeGateway) -> None:
    body = json.dumps(ALICE_BENEPIA).encode()
    assert len(body) < MAX_BODY
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        response = await gw.client.put(
            PUT_ALICE,
            content=chunks(body, 16),
            headers={**bearer(user_token("alice")), "content-type": "application/json"},
        )
    assert response.status_code == 200, response.text


async def test_headers_over_the_cap_are_431(serve_gateway: ServeGateway) -> None:
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        response = await gw.client.get("/healthz", headers={"x-padding": "a" * MAX_HEADERS})
        authed = await gw.client.get(
            "/users/alice/accounts",
            headers={**bearer(user_token("alice")), "x-padding": "a" * MAX_HEADERS},
        )
        fine = await gw.client.get("/healthz", headers={"x-padding": "a" * (MAX_HEADERS // 2)})
    assert_problem(response, 431, "headers_too_large")
    assert_problem(authed, 431, "headers_too_large")
    assert fine.status_code == 200


# --- response headers -------------------------------------------------------------------------


class Held:
    """A Benepia that holds its call until released."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        await asyncio.wait_for(self.release.wait(), 5)
        return benepia_ok()


async def test_nosniff_on_success_problem_404_and_shed_answers(
    serve_gateway: ServeGateway,
) -> None:
    held = Held()
    settings = secure_settings(resilience={"max_in_flight_requests": 1, "retry_attempts": 1})
    async with serve_gateway(settings) as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(side_effect=held)
        gw.upstream.get(GAFAPAY_URL).mock(side_effect=echo_gafapay)
        success = await gw.client.get("/healthz")
        listed = await gw.client.get("/providers")
        problem = await gw.client.get("/users/alice/accounts")
        missing = await gw.client.get("/no/such/route")
        wrong_method = await gw.client.patch("/users/alice/accounts", headers=bearer(user_token()))

        first = asyncio.create_task(
            gw.client.get("/users/alice/points/benepia", headers=bearer(user_token()))
        )
        await asyncio.wait_for(held.arrived.wait(), 5)
        shed = await gw.client.get("/users/alice/accounts", headers=bearer(user_token()))
        held.release.set()
        held_answer = await first

    for answer in (success, listed, held_answer):
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert_problem(problem, 401, "unauthorized")
    assert_problem(missing, 404, "not_found")
    assert_problem(wrong_method, 405, "method_not_allowed")
    assert_problem(shed, 503, "overloaded")
    assert shed.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/alice/points", None),
        ("GET", "/users/alice/points/benepia", None),
        ("POST", "/users/alice/points/benepia", ALICE_BENEPIA),
        ("GET", "/users/alice/accounts", None),
        ("PUT", "/users/alice/accounts/benepia", ALICE_BENEPIA),
    ],
)
async def test_personal_data_is_no_store(
    serve_gateway: ServeGateway, method: str, path: str, body: dict[str, str] | None
) -> None:
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        response = await gw.client.request(
            method, path, json=body, headers=bearer(user_token("alice"))
        )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_failed_personal_answer_is_no_store_too(serve_gateway: ServeGateway) -> None:
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(return_value=httpx.Response(500))
        response = await gw.client.get(
            "/users/alice/points/benepia", headers=bearer(user_token("alice"))
        )
    assert response.status_code >= 500
    assert response.headers["cache-control"] == "no-store"


# --- CORS -------------------------------------------------------------------------------------

SHOP = "https://shop.example"


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }


async def test_no_cors_by_default(serve_gateway: ServeGateway) -> None:
    async with serve_gateway() as gw:
        simple = await gw.client.get("/healthz", headers={"origin": SHOP})
        authed = await gw.client.get(
            "/users/alice/accounts", headers={"origin": SHOP, **bearer(user_token())}
        )
        options = await gw.client.options("/users/alice/points", headers=preflight(SHOP))
    for answer in (simple, authed, options):
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-credentials" not in answer.headers
    assert simple.status_code == 200
    assert options.status_code != 200


async def test_cors_allows_only_the_configured_origin(serve_gateway: ServeGateway) -> None:
    settings = secure_settings(limits={"cors_origins": [SHOP]})
    async with serve_gateway(settings) as gw:
        allowed = await gw.client.options("/users/alice/points", headers=preflight(SHOP))
        refused = await gw.client.options(
            "/users/alice/points", headers=preflight("https://evil.example")
        )
        simple = await gw.client.get(
            "/users/alice/accounts", headers={"origin": SHOP, **bearer(user_token())}
        )
        simple_evil = await gw.client.get(
            "/users/alice/accounts",
            headers={"origin": "https://evil.example", **bearer(user_token())},
        )
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "GET" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code != 200
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-origin" not in simple_evil.headers


# --- no internals in error bodies -------------------------------------------------------------


def assert_no_internals(response: httpx.Response) -> None:
    for marker in INTERNALS:
        assert marker not in response.text, f"{marker!r} in {response.text}"


async def test_forced_internal_error_shows_no_internals(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(side_effect=RuntimeError("boom at app/secret.py"))
        gw.upstream.get(GAFAPAY_URL).mock(side_effect=RuntimeError("boom at app/secret.py"))
        answers = [
            await gw.client.get("/users/alice/points/benepia", headers=bearer(user_token())),
            await gw.client.get("/users/alice/points", headers=bearer(user_token())),
            await gw.client.post(
                "/users/alice/points/benepia", json=ALICE_BENEPIA, headers=bearer(user_token())
            ),
        ]
    for answer in answers:
        assert answer.status_code >= 500, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "boom" not in answer.text
        assert_no_internals(answer)


async def test_no_error_body_shows_internals(serve_gateway: ServeGateway) -> None:
    async with serve_gateway(secure_settings(limits=CAPPED)) as gw:
        mock_providers(gw.upstream)
        answers = [
            await gw.client.get("/users/alice/accounts"),
            await gw.client.get("/users/alice/accounts", headers=bearer("x.y.z")),
            await gw.client.get("/users/bob/accounts", headers=bearer(user_token())),
            await gw.client.get("/nope"),
            await gw.client.delete("/providers"),
            await gw.client.put(PUT_ALICE, json={"benepia_user": 1}, headers=bearer(user_token())),
            await gw.client.put(
                PUT_ALICE,
                content=b"{not json",
                headers={**bearer(user_token()), "content-type": "application/json"},
            ),
            await gw.client.get("/users/-bad-/accounts", headers=bearer(user_token("-bad-"))),
            await gw.client.put(PUT_ALICE, content=oversized_account()),
            await gw.client.get("/healthz", headers={"x-pad": "a" * MAX_HEADERS}),
        ]
    async with serve_gateway(secure_settings(limits={"rate": "1/minute"})) as gw:
        answers += [await gw.client.get("/providers"), await gw.client.get("/providers")]
    statuses = [a.status_code for a in answers]
    assert statuses == [401, 401, 403, 404, 405, 422, 422, 422, 413, 431, 200, 429]
    for answer in answers:
        assert_no_internals(answer)


# --- log redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("sent header Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "eyJhbGciOi.eyJzdWIi"),
        ("login password=hunter2 ok", "hunter2"),
        ('{"imp_secret": "x"}', '"x"'),
        ('{"imp_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ("X-API-Key: pgk-live-0123456789", "pgk-live-0123456789"),
        ("token=abcdef123456", "abcdef123456"),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_exact_forms() -> None:
    assert redact("password=hunter2") == "password=[REDACTED]"
    assert redact('"imp_secret": "x"') == '"imp_secret": "[REDACTED]"'
    assert redact("Bearer abc.def.ghi") == "Bearer [REDACTED]"


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def.ghi",
        "authorization=Bearer abc.def.ghi",
        'headers={"authorization": "Bearer abc.def.ghi"}',
    ],
)
def test_redact_masks_an_authorization_header(text: str) -> None:
    cleaned = redact(text)
    assert "abc.def.ghi" not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_turns_line_breaks_into_literals() -> None:
    forged = "user=alice\r\n2026-01-01 INFO points_gateway admin logged in\nnext"
    cleaned = redact(forged)
    assert "\r" not in cleaned
    assert "\n" not in cleaned
    assert cleaned == "user=alice\\r\\n2026-01-01 INFO points_gateway admin logged in\\nnext"


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "GET /users/alice/points 200 in 12 ms"
    assert redact(text) == text


def test_redacting_filter_cleans_formatted_records() -> None:
    record = logging.LogRecord(
        "points_gateway",
        logging.INFO,
        __file__,
        1,
        "header %s\n%s",
        ("Bearer abc.def.ghi", "x"),
        None,
    )
    assert RedactingFilter().filter(record)
    message = record.getMessage()
    assert "abc.def.ghi" not in message
    assert "\n" not in message

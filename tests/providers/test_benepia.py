"""The Benepia adapter through the HTTP API: one test per error-table row it can produce."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial

import httpx
import pytest
import respx

from app.settings import Settings
from tests.conftest import (
    BENEPIA_PASSWORD,
    BENEPIA_URL,
    IMP_KEY,
    IMP_SECRET,
    TOKEN_URL,
    AppFactory,
    assert_upstream_problem,
    benepia_ok,
    make_settings,
    serve_in_process,
    token_ok,
)

PATH = "/users/alice/points/benepia"
KOREAN_REJECTION = "베네피아 아이디 또는 비밀번호가 일치하지 않습니다."


def mock_benepia(
    upstream: respx.MockRouter,
    point: httpx.Response | None = None,
    token: httpx.Response | None = None,
) -> tuple[respx.Route, respx.Route]:
    """Routes for getToken and the point query (both succeed unless told otherwise)."""
    token_route = upstream.post(TOKEN_URL).mock(return_value=token or token_ok())
    point_route = upstream.post(BENEPIA_URL).mock(return_value=point or benepia_ok())
    return token_route, point_route


assert_problem = partial(assert_upstream_problem, provider="benepia")


def settings_with(**benepia: object) -> Settings:
    """Test settings with the Benepia section changed (None removes a key)."""
    settings = make_settings()
    section = dict(settings.providers["benepia"])
    for key, value in benepia.items():
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    settings.providers["benepia"] = section
    return settings


def envelope(code: object, message: object = "", response: object = None) -> httpx.Response:
    return httpx.Response(200, json={"code": code, "message": message, "response": response})


# --- success -----------------------------------------------------------------------------------


async def test_success_sends_login_channel_key_and_bearer_token(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream, token=token_ok("tok-abc"))

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["provider"] == "benepia"
    assert body["status"] == "ok"
    assert body["points"] == "12000"
    assert body["unit"] == "benepia_point"
    assert body["error"] is None
    assert token_route.call_count == 1
    assert json.loads(token_route.calls.last.request.content) == {
        "imp_key": IMP_KEY,
        "imp_secret": IMP_SECRET,
    }
    assert point_route.call_count == 1
    sent = point_route.calls.last.request
    assert json.loads(sent.content) == {
        "benepia_user": "alice.kim",
        "benepia_password": BENEPIA_PASSWORD,
        "channel_key": "channel-key-test",
    }
    assert sent.headers["authorization"] == "Bearer tok-abc"
    assert "tok-abc" not in str(sent.url)
    assert "tok-abc" not in str(token_route.calls.last.request.url)


async def test_token_is_reused_across_requests(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream)

    for _ in range(3):
        assert (await client.get(PATH)).status_code == 200

    assert token_route.call_count == 1
    assert point_route.call_count == 3


async def test_legacy_pg_setting_is_sent_instead_of_channel_key(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    _, point_route = mock_benepia(upstream)
    settings = settings_with(channel_key=None, pg="kcp.A52CY")

    async with serve_in_process(gateway_app(settings)) as client:
        response = await client.get(PATH)

    assert response.status_code == 200, response.text
    sent = json.loads(point_route.calls.last.request.content)
    assert sent["pg"] == "kcp.A52CY"
    assert "channel_key" not in sent
    assert sent["benepia_user"] == "alice.kim"
    assert sent["benepia_password"] == BENEPIA_PASSWORD


async def test_unknown_fields_are_ignored(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    answer = {
        "code": 0,
        "message": None,
        "response": {"point": 345, "point_type": "welfare", "expires": [1, 2]},
        "trace_id": "abc",
        "meta": {"new": True},
    }
    mock_benepia(upstream, point=httpx.Response(200, json=answer))

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "345"


# --- upstream_timeout --------------------------------------------------------------------------


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_transport_timeout_is_504(
    client: httpx.AsyncClient, upstream: respx.MockRouter, error: type[Exception]
) -> None:
    _, point_route = mock_benepia(upstream)
    point_route.mock(side_effect=error)

    response = await client.get(PATH)

    assert_problem(response, 504, "upstream_timeout")
    assert point_route.call_count == 1


async def test_get_token_timeout_is_504(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream)
    token_route.mock(side_effect=httpx.ReadTimeout)

    assert_problem(await client.get(PATH), 504, "upstream_timeout")
    assert point_route.call_count == 0


async def test_provider_timeout_fires_when_upstream_hangs(
    gateway_app: AppFactory, upstream: respx.MockRouter
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return benepia_ok()

    _, point_route = mock_benepia(upstream)
    point_route.mock(side_effect=hang)
    loop = asyncio.get_running_loop()

    async with serve_in_process(gateway_app(settings_with(timeout=0.2))) as client:
        started = loop.time()
        response = await client.get(PATH)
        elapsed = loop.time() - started

    # The hang answers 200 after 0.3 s: a 504 naming the 0.2 s timeout is the timeout firing.
    # Only the lower bound is timed (it cannot fire early); an upper bound failed on a busy CI
    # machine (0.64 s), and speed is the bench's business, not a test's.
    body = assert_problem(response, 504, "upstream_timeout")
    assert "0.20" in str(body["detail"])
    assert elapsed >= 0.15


# --- upstream_unreachable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError]
)
async def test_transport_failure_is_unreachable(
    client: httpx.AsyncClient, upstream: respx.MockRouter, error: type[Exception]
) -> None:
    _, point_route = mock_benepia(upstream)
    point_route.mock(side_effect=error)

    assert_problem(await client.get(PATH), 502, "upstream_unreachable")


async def test_get_token_connect_error_is_unreachable(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream)
    token_route.mock(side_effect=httpx.ConnectError)

    assert_problem(await client.get(PATH), 502, "upstream_unreachable")
    assert point_route.call_count == 0


# --- upstream_error ----------------------------------------------------------------------------


async def test_500_envelope_message_is_passed_through(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    failure = {"code": -1, "message": "Benepia point query failed", "response": None}
    mock_benepia(upstream, point=httpx.Response(500, json=failure))

    response = await client.get(PATH)
    body = assert_problem(response, 502, "upstream_error", upstream_status=500, upstream_code="-1")

    assert body["detail"] == "Benepia point query failed"


@pytest.mark.parametrize(
    ("status", "content", "headers"),
    [
        (500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"),
        (500, b"", "text/plain"),
        (502, b"Bad Gateway", "text/plain"),
        (503, b'{"code":-1,"message":"maintenance","response":null}', "application/json"),
        (504, b"<html>Gateway Timeout</html>", "text/html"),
    ],
    ids=["html-500", "empty-500", "502", "503-without-retry-after", "504"],
)
async def test_5xx_is_upstream_error(
    client: httpx.AsyncClient,
    upstream: respx.MockRouter,
    status: int,
    content: bytes,
    headers: str,
) -> None:
    answer = httpx.Response(status, content=content, headers={"content-type": headers})
    mock_benepia(upstream, point=answer)
    code = "-1" if content.startswith(b"{") else None

    response = await client.get(PATH)
    body = assert_problem(
        response, 502, "upstream_error", upstream_status=status, upstream_code=code
    )

    assert "<html" not in str(body["detail"])


async def test_get_token_500_is_upstream_error(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_benepia(upstream, token=httpx.Response(500, text="<html>oops</html>"))

    assert_problem(await client.get(PATH), 502, "upstream_error", upstream_status=500)


# --- upstream_invalid_response -----------------------------------------------------------------

OVER_CAP = 1_048_576 + 1

INVALID_ANSWERS = {
    "not-json": httpx.Response(200, text="OK"),
    "html": httpx.Response(200, html="<html><body>hello</body></html>"),
    "json-array": httpx.Response(200, json=[{"code": 0, "response": {"point": 1}}]),
    "code-0-response-null": envelope(0, "", None),
    "code-0-response-empty": envelope(0, "", {}),
    "code-as-string": envelope("0", "", {"point": 1}),
    "point-as-string": envelope(0, "", {"point": "12000"}),
    "point-as-float": httpx.Response(
        200, content=b'{"code":0,"message":"","response":{"point":1.5}}'
    ),
    "point-as-bool": envelope(0, "", {"point": True}),
    "point-null": envelope(0, "", {"point": None}),
    "huge-body": httpx.Response(
        200, content=b'{"code":0,"message":"' + b"x" * OVER_CAP + b'","response":{"point":1}}'
    ),
    "content-length-over-cap": httpx.Response(
        200,
        content=b'{"code":0,"message":"","response":{"point":1}}',
        headers={"content-length": str(OVER_CAP + 10)},
    ),
}


@pytest.mark.parametrize("name", list(INVALID_ANSWERS))
async def test_broken_contract_is_invalid_response(
    client: httpx.AsyncClient, upstream: respx.MockRouter, name: str
) -> None:
    mock_benepia(upstream, point=INVALID_ANSWERS[name])

    assert_problem(await client.get(PATH), 502, "upstream_invalid_response", upstream_status=200)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="not json"),
        envelope(0, None, None),
        envelope(0, None, {"access_token": "t", "now": 10, "expired_at": 5}),
        envelope(0, None, {"access_token": 7, "now": 10, "expired_at": 1810}),
    ],
    ids=["not-json", "no-response", "expired", "token-not-string"],
)
async def test_broken_get_token_is_invalid_response(
    client: httpx.AsyncClient, upstream: respx.MockRouter, answer: httpx.Response
) -> None:
    _, point_route = mock_benepia(upstream, token=answer)

    assert_problem(await client.get(PATH), 502, "upstream_invalid_response", upstream_status=200)
    assert point_route.call_count == 0


# --- upstream_auth_failed ----------------------------------------------------------------------


async def test_get_token_401_is_not_retried(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    refused = httpx.Response(401, json={"code": -1, "message": "Unauthorized", "response": None})
    token_route, point_route = mock_benepia(upstream, token=refused)

    assert_problem(await client.get(PATH), 502, "upstream_auth_failed", upstream_status=401)
    assert token_route.call_count == 1
    assert point_route.call_count == 0


async def test_get_token_refused_by_code_is_auth_failed(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, _ = mock_benepia(upstream, token=envelope(-1, "imp_key 가 올바르지 않습니다"))

    body = assert_problem(
        await client.get(PATH), 502, "upstream_auth_failed", upstream_status=200, upstream_code="-1"
    )
    assert body["detail"] == "imp_key 가 올바르지 않습니다"
    assert token_route.call_count == 1


async def test_data_401_twice_refreshes_once_then_fails(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream, point=httpx.Response(401))
    token_route.mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])

    assert_problem(await client.get(PATH), 502, "upstream_auth_failed", upstream_status=401)
    assert token_route.call_count == 2
    assert point_route.call_count == 2
    sent = [call.request.headers["authorization"] for call in point_route.calls]
    assert sent == ["Bearer tok-1", "Bearer tok-2"]


async def test_data_401_then_success_refreshes_exactly_once(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream)
    token_route.mock(side_effect=[token_ok("tok-1"), token_ok("tok-2")])
    point_route.mock(side_effect=[httpx.Response(401), benepia_ok(777)])

    response = await client.get(PATH)

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "777"
    assert token_route.call_count == 2
    assert point_route.call_count == 2
    assert point_route.calls.last.request.headers["authorization"] == "Bearer tok-2"


# --- upstream_rate_limited ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7), (503, "12", 12), (429, None, 1), (429, "0", 1), (429, "86400", 3600)],
    ids=["429-with", "503-with", "429-without", "429-zero", "429-clamped"],
)
async def test_backoff_is_503_with_retry_after(
    client: httpx.AsyncClient,
    upstream: respx.MockRouter,
    status: int,
    retry_after: str | None,
    expected: int,
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    mock_benepia(upstream, point=httpx.Response(status, headers=headers))

    response = await client.get(PATH)

    body = assert_problem(response, 503, "upstream_rate_limited", upstream_status=status)
    assert response.headers["retry-after"] == str(expected)
    assert body["retry_after"] == expected


async def test_retry_after_as_http_date(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    mock_benepia(upstream, point=httpx.Response(429, headers={"retry-after": when}))

    response = await client.get(PATH)

    assert_problem(response, 503, "upstream_rate_limited", upstream_status=429)
    assert 30 <= int(response.headers["retry-after"]) <= 40


async def test_get_token_429_is_rate_limited(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    _, point_route = mock_benepia(upstream, token=httpx.Response(429, headers={"retry-after": "3"}))

    response = await client.get(PATH)

    assert_problem(response, 503, "upstream_rate_limited", upstream_status=429)
    assert response.headers["retry-after"] == "3"
    assert point_route.call_count == 0


# --- provider_rejected -------------------------------------------------------------------------


async def test_business_error_passes_korean_message_verbatim(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    mock_benepia(upstream, point=envelope(1, KOREAN_REJECTION, None))

    response = await client.get(PATH)

    body = assert_problem(
        response, 422, "provider_rejected", upstream_status=200, upstream_code="1"
    )
    assert body["detail"] == KOREAN_REJECTION


@pytest.mark.parametrize("message", [None, ""], ids=["null", "empty"])
async def test_pg_refusal_without_message(
    client: httpx.AsyncClient, upstream: respx.MockRouter, message: str | None
) -> None:
    mock_benepia(upstream, point=envelope(-1, message, None))

    response = await client.get(PATH)

    body = assert_problem(
        response, 422, "provider_rejected", upstream_status=200, upstream_code="-1"
    )
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_rejection_with_4xx_envelope_is_rejected(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    refused = httpx.Response(400, json={"code": 1, "message": "잘못된 요청", "response": None})
    mock_benepia(upstream, point=refused)

    body = assert_problem(
        await client.get(PATH), 422, "provider_rejected", upstream_status=400, upstream_code="1"
    )
    assert body["detail"] == "잘못된 요청"


async def test_rejection_up_to_499_is_rejected_and_from_500_an_upstream_error(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    refused = {"code": 1, "message": "거절", "response": None}
    _, route = mock_benepia(upstream, point=httpx.Response(499, json=refused))
    assert_problem(
        await client.get(PATH), 422, "provider_rejected", upstream_status=499, upstream_code="1"
    )

    route.mock(return_value=httpx.Response(500, json=refused))
    assert_problem(
        await client.get(PATH), 502, "upstream_error", upstream_status=500, upstream_code="1"
    )


async def test_rejected_login_is_not_retried(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    token_route, point_route = mock_benepia(upstream, point=envelope(1, KOREAN_REJECTION, None))

    assert_problem(
        await client.get(PATH), 422, "provider_rejected", upstream_status=200, upstream_code="1"
    )
    assert point_route.call_count == 1
    assert token_route.call_count == 1

"""Structured logs: one JSON line per request and per upstream attempt, no secret in any line."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
import respx

from app.observability.logging import QUIET_LOGGERS, configure_logging, get_logger
from tests.conftest import (
    BENEPIA_URL,
    GAFAPAY_URL,
    SECRETS,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    serve_in_process,
    token_ok,
)
from tests.operations.conftest import CapturedLogs

POINTS_ROUTE = "/users/{user_id}/points"
JWT_SECRET = "operations-test-jwt-secret-0123456789abcdef"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mock_ok(upstream: respx.MockRouter) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())


async def test_one_request_writes_a_request_line_and_an_upstream_line_per_attempt(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    async with serve_in_process(gateway_app()) as client:
        response = await client.get("/users/alice/points")

    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    (line,) = json_logs.events("request")
    assert line["route"] == POINTS_ROUTE
    assert "alice" not in repr(line), "the raw path (a user id) is not logged"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert is_number(line["duration_ms"])
    assert line["duration_ms"] >= 0
    assert line["request_id"] == request_id
    assert line["principal"] == "auth-disabled"
    assert line["level"] == "info"
    assert line["logger"] == "points_gateway.access"
    assert isinstance(line["timestamp"], str)

    calls = {c["provider"]: c for c in json_logs.events("upstream_call")}
    assert set(calls) == {"benepia", "gafapay"}
    for provider, call in calls.items():
        assert call["outcome"] == "ok", provider
        assert call["upstream_status"] == 200
        assert call["attempt"] == 1
        assert is_number(call["duration_ms"])
        assert call["cache"] == "miss"
        assert call["request_id"] == request_id, "the request id reaches the upstream lines"
    (token,) = json_logs.events("iamport_get_token")
    assert (token["outcome"], token["upstream_status"]) == ("ok", 200)

    for secret in SECRETS:
        assert secret not in json_logs.text


async def test_a_failing_attempt_and_its_retry_each_get_a_line(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    upstream.get(GAFAPAY_URL).mock(
        side_effect=[httpx.Response(503, json={"success": 0, "error": []}), gafapay_ok()]
    )
    settings = make_settings(resilience={"retry_attempts": 2, "retry_wait_initial": 0.0})
    async with serve_in_process(gateway_app(settings)) as client:
        response = await client.get("/users/alice/points/gafapay")

    assert response.status_code == 200, response.text
    attempts = [
        (c["attempt"], c["outcome"], c["upstream_status"], c["level"])
        for c in json_logs.events("upstream_call")
    ]
    assert attempts == [(1, "upstream_error", 503, "warning"), (2, "ok", 200, "info")]
    (line,) = json_logs.events("request")
    assert line["route"] == "/users/{user_id}/points/gafapay"


async def test_a_cache_hit_is_logged_at_debug_without_an_upstream_call(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    settings = make_settings(cache={"ttl": 60, "stale_if_error": 0})
    async with serve_in_process(gateway_app(settings)) as client:
        first = await client.get("/users/alice/points/gafapay")
        at_info = await client.get("/users/alice/points/gafapay")
        logging.getLogger().setLevel(logging.DEBUG)
        second = await client.get("/users/alice/points/gafapay")

    assert [r.json()["cached"] for r in (first, at_info, second)] == [False, True, True]
    assert len(json_logs.events("upstream_call")) == 1
    (hit,) = json_logs.events("balance_from_cache")
    assert hit["level"] == "debug"
    assert (hit["provider"], hit["cache"]) == ("gafapay", "hit")
    assert hit["request_id"] == second.headers["x-request-id"]


async def test_a_stale_answer_is_logged_as_a_warning(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    gafapay = upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())
    settings = make_settings(cache={"ttl": 0, "stale_if_error": 600})
    async with serve_in_process(gateway_app(settings)) as client:
        fresh = await client.get("/users/alice/points/gafapay")
        gafapay.mock(return_value=httpx.Response(500, json={"success": 0, "error": ["boom"]}))
        stale = await client.get("/users/alice/points/gafapay")

    assert (fresh.json()["stale"], stale.json()["stale"]) == (False, True)
    (line,) = json_logs.events("balance_from_cache")
    assert (line["level"], line["cache"], line["provider"]) == ("warning", "stale", "gafapay")
    assert line["request_id"] == stale.headers["x-request-id"]


async def test_the_request_line_names_the_authenticated_principal_only(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    settings = make_settings(auth={"mode": "required", "jwt_secret": JWT_SECRET})
    now = int(time.time())
    token = jwt.encode({"sub": "alice", "exp": now + 300}, JWT_SECRET, algorithm="HS256")
    async with serve_in_process(gateway_app(settings)) as client:
        ok = await client.get(
            "/users/alice/points/gafapay", headers={"authorization": f"Bearer {token}"}
        )
        anonymous = await client.get("/users/alice/points/gafapay")

    assert (ok.status_code, anonymous.status_code) == (200, 401)
    by_id = {line["request_id"]: line for line in json_logs.events("request")}
    assert by_id[ok.headers["x-request-id"]]["principal"] == "alice"
    assert "principal" not in by_id[anonymous.headers["x-request-id"]]
    assert token not in json_logs.text
    assert JWT_SECRET not in json_logs.text


async def test_unmatched_paths_are_not_logged_raw(
    gateway_app: AppFactory, json_logs: CapturedLogs
) -> None:
    async with serve_in_process(gateway_app()) as client:
        response = await client.get("/no/such/secret-looking/path")

    assert response.status_code == 404
    (line,) = json_logs.events("request")
    assert (line["route"], line["status"]) == ("unmatched", 404)
    assert "secret-looking" not in json_logs.text


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Let a test call configure_logging: the root and uvicorn loggers are restored after it."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", *QUIET_LOGGERS)
    saved = {name: logging.getLogger(name) for name in names}
    state = {name: (lg.level, list(lg.handlers), lg.propagate) for name, lg in saved.items()}
    root_state = (root.level, list(root.handlers))
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in root_state[1]:
            root.addHandler(handler)
        root.setLevel(root_state[0])
        for name, (level, handlers, propagate) in state.items():
            saved[name].setLevel(level)
            saved[name].handlers[:] = handlers
            saved[name].propagate = propagate


@pytest.mark.usefixtures("root_logging")
def test_library_records_are_json_redacted_and_one_line_each() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream, force=True)
    logging.getLogger("some.library").warning("login with password=%s\nforged line", "hunter2-pw")
    get_logger("points_gateway.test").info(
        "structured", token="tok-1234567890", detail="Authorization: Bearer abcdefghijkl"
    )
    logging.getLogger("httpx").info("HTTP Request: GET https://gafapay.test/?user_id=fb8f")

    lines = CapturedLogs(stream).lines()
    assert [line["logger"] for line in lines] == ["some.library", "points_gateway.test"]
    assert lines[0]["level"] == "warning"
    assert "hunter2-pw" not in stream.getvalue()
    assert "forged line" in lines[0]["event"]  # on the same line: CR/LF cannot forge one
    assert lines[1]["token"] == "[REDACTED]"
    assert "abcdefghijkl" not in stream.getvalue()


@pytest.mark.usefixtures("root_logging")
def test_a_root_logger_someone_else_configured_is_left_alone() -> None:
    theirs = logging.NullHandler()
    logging.getLogger().addHandler(theirs)

    assert configure_logging("json", "info") is None  # as logging.basicConfig would

    assert theirs in logging.getLogger().handlers
    ours = configure_logging("json", "info", stream=io.StringIO(), force=True)
    assert logging.getLogger().handlers == [ours]
    again = configure_logging("console", "debug", stream=io.StringIO())
    assert logging.getLogger().handlers == [again], "its own handler is replaced, not stacked"


@pytest.mark.usefixtures("root_logging")
def test_console_format_is_readable_and_redacted() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream, force=True)
    get_logger("points_gateway.demo").info("upstream_call", provider="gafapay", secret="x1y2")

    text = stream.getvalue()
    assert "upstream_call" in text
    assert "provider=gafapay" in text
    assert "x1y2" not in text
    assert not text.lstrip().startswith("{")

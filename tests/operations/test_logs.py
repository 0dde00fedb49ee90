"""Structured logs: one JSON line per request at INFO, naming what each provider did; a line per
upstream attempt at DEBUG, or when it failed or was a retry; no secret in any line."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
import respx

from app.observability import events
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
from tests.operations.conftest import CapturedLogs, sample, scrape

POINTS_ROUTE = "/users/{user_id}/points"
GUARD = 5.0  # a hang guard, not a timing assertion
JWT_SECRET = "operations-test-jwt-secret-0123456789abcdef"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mock_ok(upstream: respx.MockRouter) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL, name="benepia").mock(return_value=benepia_ok())
    upstream.get(GAFAPAY_URL, name="gafapay").mock(return_value=gafapay_ok())


async def test_a_merged_request_writes_one_line_at_info_naming_each_provider(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    async with serve_in_process(gateway_app()) as client:
        first = await client.get("/users/alice/points")
        login = json_logs.lines()
        json_logs.clear()
        response = await client.get("/users/alice/points")

    assert (first.status_code, response.status_code) == (200, 200), response.text
    # The first request also logged in to iamport: once per token, not per request.
    assert [line["event"] for line in login] == ["iamport_get_token", "request"]
    (line,) = json_logs.lines()
    assert line["event"] == "request"
    assert line["route"] == POINTS_ROUTE
    assert "alice" not in repr(line), "the raw path (a user id) is not logged"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert is_number(line["duration_ms"])
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["principal"] == "auth-disabled"
    assert line["level"] == "info"
    assert line["logger"] == "points_gateway.access"
    assert isinstance(line["timestamp"], str)

    providers = line["providers"]
    assert set(providers) == {"benepia", "gafapay"}
    for name, summary in providers.items():
        assert set(summary) == {"outcome", "source", "attempts", "upstream_ms"}, name
        assert (summary["outcome"], summary["source"], summary["attempts"]) == ("ok", "upstream", 1)
        assert is_number(summary["upstream_ms"])
        assert 0 < summary["upstream_ms"] <= line["duration_ms"]

    for secret in SECRETS:
        assert secret not in json_logs.text


async def test_at_debug_each_attempt_has_its_line(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    logging.getLogger().setLevel(logging.DEBUG)
    async with serve_in_process(gateway_app()) as client:
        response = await client.get("/users/alice/points")

    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    (line,) = json_logs.events("request")
    calls = {c["provider"]: c for c in json_logs.events("upstream_call")}
    assert set(calls) == {"benepia", "gafapay"}
    for provider, call in calls.items():
        assert call["level"] == "debug", provider
        assert call["outcome"] == "ok"
        assert call["upstream_status"] == 200
        assert call["attempt"] == 1
        assert is_number(call["duration_ms"])
        assert call["cache"] == "miss"
        assert call["request_id"] == request_id, "the request id reaches the upstream lines"
        assert line["providers"][provider]["upstream_ms"] == call["duration_ms"]
    (token,) = json_logs.events("iamport_get_token")
    assert (token["outcome"], token["upstream_status"]) == ("ok", 200)
    assert "upstream_ms" not in token


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
    calls = json_logs.events("upstream_call")
    attempts = [(c["attempt"], c["outcome"], c["upstream_status"], c["level"]) for c in calls]
    assert attempts == [(1, "upstream_error", 503, "warning"), (2, "ok", 200, "info")]
    (line,) = json_logs.events("request")
    assert line["route"] == "/users/{user_id}/points/gafapay"
    gafapay = line["providers"]["gafapay"]
    assert (gafapay["outcome"], gafapay["source"], gafapay["attempts"]) == ("ok", "upstream", 2)
    both = sum(c["duration_ms"] for c in calls)
    assert gafapay["upstream_ms"] == pytest.approx(both, abs=0.01), "both attempts, summed"
    assert [entry["event"] for entry in json_logs.lines()] == ["upstream_call"] * 2 + ["request"]


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
    assert upstream.routes["gafapay"].call_count == 1
    assert json_logs.events("upstream_call") == [], (
        "the first call was a first attempt that went well"
    )
    by_id = {line["request_id"]: line for line in json_logs.events("request")}
    assert by_id[first.headers["x-request-id"]]["providers"]["gafapay"]["source"] == "upstream"
    for cached in (at_info, second):
        summary = by_id[cached.headers["x-request-id"]]["providers"]
        assert summary == {
            "gafapay": {"outcome": "ok", "source": "cache", "attempts": 0, "upstream_ms": 0.0}
        }
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
    (failed,) = json_logs.events("upstream_call")
    assert (failed["level"], failed["outcome"]) == ("warning", "upstream_error")
    request = json_logs.events("request")[-1]
    assert request["request_id"] == stale.headers["x-request-id"]
    summary = request["providers"]["gafapay"]
    # What the client got (a balance, flagged stale), and the attempt that failed.
    assert (summary["outcome"], summary["source"], summary["attempts"]) == ("ok", "stale", 1)
    assert summary["upstream_ms"] == failed["duration_ms"]


async def test_a_request_that_joined_another_ones_call_names_it_coalesced(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    called, release = asyncio.Event(), asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        called.set()
        await asyncio.wait_for(release.wait(), GUARD)
        return gafapay_ok()

    gafapay = upstream.get(GAFAPAY_URL).mock(side_effect=held)
    async with serve_in_process(gateway_app()) as client:
        leader = asyncio.create_task(client.get("/users/alice/points/gafapay"))
        await asyncio.wait_for(called.wait(), GUARD)
        follower = asyncio.create_task(client.get("/users/alice/points/gafapay"))
        # Its cache miss is counted right before it joins the call in flight, in the same step.
        while sample(await scrape(client), "points_cache_misses_total", provider="gafapay") != 2:
            await asyncio.sleep(0.005)
        release.set()
        answers = await asyncio.wait_for(asyncio.gather(leader, follower), GUARD)

    assert [a.status_code for a in answers] == [200, 200]
    assert gafapay.call_count == 1
    by_id = {line["request_id"]: line["providers"] for line in json_logs.events("request")}
    ran = by_id[answers[0].headers["x-request-id"]]["gafapay"]
    joined = by_id[answers[1].headers["x-request-id"]]["gafapay"]
    assert (ran["outcome"], ran["source"], ran["attempts"]) == ("ok", "upstream", 1)
    assert ran["upstream_ms"] > 0
    assert joined == {"outcome": "ok", "source": "coalesced", "attempts": 0, "upstream_ms": 0.0}


async def test_a_provider_not_called_is_named_with_why(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    upstream.get(GAFAPAY_URL).mock(return_value=httpx.Response(500, json={"success": 0}))
    breaker = {"breaker_consecutive_failures": 1, "breaker_open_seconds": 60}
    async with serve_in_process(gateway_app(make_settings(resilience=breaker))) as client:
        failed = await client.get("/users/alice/points/gafapay")
        skipped = await client.get("/users/alice/points/gafapay")
        unlinked = await client.get("/users/bob/points", params={"providers": "benepia"})

    assert (failed.status_code, skipped.status_code) == (502, 503)
    assert unlinked.json()["balances"][0]["error"]["code"] == "account_not_linked"
    by_id = {line["request_id"]: line["providers"] for line in json_logs.events("request")}
    assert by_id[failed.headers["x-request-id"]]["gafapay"]["outcome"] == "upstream_error"
    assert by_id[skipped.headers["x-request-id"]] == {
        "gafapay": {"outcome": "circuit_open", "source": "none", "attempts": 0, "upstream_ms": 0.0}
    }
    assert by_id[unlinked.headers["x-request-id"]] == {
        "benepia": {
            "outcome": "account_not_linked",
            "source": "none",
            "attempts": 0,
            "upstream_ms": 0.0,
        }
    }


async def test_a_request_without_providers_has_no_providers_field(
    gateway_app: AppFactory, json_logs: CapturedLogs
) -> None:
    async with serve_in_process(gateway_app()) as client:
        response = await client.get("/users/alice/accounts")

    assert response.status_code == 200, response.text
    (line,) = json_logs.events("request")
    assert "providers" not in line


async def test_provider_events_outside_a_request_note_nothing_and_do_not_fail(
    json_logs: CapturedLogs,
) -> None:
    """Background work (a token refresh, a test's direct fetch) has no request to note into."""
    with events.upstream_attempt("gafapay", 1, "miss"):
        pass
    with events.upstream_attempt("gafapay", 2, "miss"):
        pass
    events.cache_served("gafapay", stale=True, age=1.0)
    events.upstream_skipped("gafapay", "circuit_open")
    events.provider_answered("gafapay", "ok", "coalesced")

    lines = [(line["event"], line["level"]) for line in json_logs.lines()]
    assert lines == [
        ("upstream_call", "info"),
        ("balance_from_cache", "warning"),
        ("upstream_skipped", "info"),
    ]


async def test_concurrent_requests_each_name_their_own_providers(
    gateway_app: AppFactory, upstream: respx.MockRouter, json_logs: CapturedLogs
) -> None:
    mock_ok(upstream)
    users = ("alice", "carol") * 4
    async with serve_in_process(gateway_app()) as client:
        answers = await asyncio.gather(*(client.get(f"/users/{user}/points") for user in users))

    assert all(a.status_code == 200 for a in answers)
    by_id = {line["request_id"]: line["providers"] for line in json_logs.events("request")}
    linked = {"alice": {"benepia", "gafapay"}, "carol": {"benepia"}}
    attempts = dict.fromkeys(("benepia", "gafapay"), 0)
    for user, answer in zip(users, answers, strict=True):
        providers = by_id[answer.headers["x-request-id"]]
        assert set(providers) == linked[user], user
        for name, summary in providers.items():
            assert summary["outcome"] == "ok"
            assert summary["source"] in {"upstream", "coalesced"}
            attempts[name] += summary["attempts"]
    # A call shared by single-flight is counted once, in the request that made it.
    calls = {name: upstream.routes[name].call_count for name in attempts}
    assert attempts == calls


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

"""SIGTERM under load: /readyz fails at once, the listener serves through the drain, then closes."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    KEY,
    Sandboxes,
    ServeProcess,
    db_upgrade,
    gateway_env,
    running_sandboxes,
    serve_process,
)

pytestmark = pytest.mark.integration

DRAIN = 3
GRACE = 5
# Hang guards only: the test asserts the order of events, never how long they took.
EXIT_GUARD = DRAIN + GRACE + 10
CLIENT_GUARD = 30.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request on a fresh connection, as the client saw it (wall clock, as the logs are)."""

    path: str
    started: float
    ended: float
    status: int | None
    error: str | None

    @property
    def refused(self) -> bool:
        return self.error == "refused"


def _attempt(base_url: str, path: str) -> Attempt:
    started = time.time()
    # No keep-alive: every request opens its own connection, as a client arriving during a
    # shutdown does, so a closed listener shows up as a refused connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    try:
        with httpx.Client(base_url=base_url, timeout=5.0, limits=limits) as client:
            status = client.get(path).status_code
    except httpx.ConnectError as exc:
        refused = isinstance(exc.__cause__, ConnectionRefusedError) or "refused" in str(exc)
        return Attempt(path, started, time.time(), None, "refused" if refused else repr(exc))
    except httpx.HTTPError as exc:
        return Attempt(path, started, time.time(), None, repr(exc))
    return Attempt(path, started, time.time(), status, None)


class ClientLoop:
    """Requests one after another (/healthz, /readyz) until told to stop or the port stays shut."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + CLIENT_GUARD
        refused_in_a_row = 0
        paths = ("/healthz", "/readyz")
        while not self._stop.is_set() and time.monotonic() < deadline and refused_in_a_row < 20:
            attempt = _attempt(self.base_url, paths[len(self.attempts) % 2])
            self.attempts.append(attempt)
            refused_in_a_row = refused_in_a_row + 1 if attempt.refused else 0

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(CLIENT_GUARD)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + CLIENT_GUARD
        while sum(a.status == 200 for a in self.attempts) < count:
            assert time.monotonic() < deadline, self.attempts[-5:]
            time.sleep(0.01)

    def join(self) -> None:
        self._thread.join(CLIENT_GUARD)
        assert not self._thread.is_alive(), "the client loop never saw the port close"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with running_sandboxes() as running:
        yield running


def _env(sandboxes: Sandboxes, tmp_path: Path, drain: int) -> dict[str, str]:
    env = {
        **gateway_env(sandboxes.urls, tmp_path, KEY),
        "POINTS_SHUTDOWN_DRAIN": str(drain),
        "POINTS_SHUTDOWN_GRACE": str(GRACE),
    }
    db_upgrade(env, tmp_path)
    return env


def _exit_code(served: ServeProcess, within: float) -> int:
    try:
        code = served.proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within {within} s: {served.stderr.read_text()[-2000:]}")
    return code


def _logged_at(served: ServeProcess, event: str) -> float:
    """When `event` was first logged (with --workers N each worker logs its own)."""
    line = next(line for line in served.log_lines() if line["event"] == event)
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


SERVE_ARGS = pytest.mark.parametrize(
    "args", [pytest.param([], id="one-process"), pytest.param(["--workers", "2"], id="workers")]
)


@SERVE_ARGS
def test_sigterm_fails_readiness_serves_through_the_drain_then_refuses_and_exits(
    sandboxes: Sandboxes, tmp_path: Path, args: list[str]
) -> None:
    env = _env(sandboxes, tmp_path, DRAIN)
    with (
        serve_process(env, tmp_path, "drain", args=args) as served,
        ClientLoop(served.base_url) as client,
    ):
        client.wait_for(20)
        signalled = time.time()
        served.proc.send_signal(signal.SIGTERM)
        code = _exit_code(served, EXIT_GUARD)
        client.join()
    attempts = client.attempts

    assert code in (0, -signal.SIGTERM), served.stderr.read_text()
    drained_at = _logged_at(served, "shutdown_drain")
    # uvicorn's line, just before it closes the listener (the first worker's, with --workers N).
    closed_at = _logged_at(served, "Shutting down")
    assert signalled <= drained_at < closed_at

    before = [a for a in attempts if a.ended < signalled]
    window = [a for a in attempts if a.started >= signalled and a.ended < closed_at]
    after_close = [a for a in attempts if a.ended >= closed_at]
    assert before
    assert all(a.status == 200 for a in before), before[-5:]
    # The drain: every request made after the signal, up to the listener's close, was answered.
    assert [a for a in window if a.error is not None] == []
    assert {a.status for a in window if a.path == "/healthz"} == {200}
    readyz = [a.status for a in window if a.path == "/readyz"]
    assert 503 in readyz, readyz
    first_503 = readyz.index(503)
    assert set(readyz[first_503:]) == {503}, "readiness never comes back once it failed"
    # Then the port closed for good: refused connections, and only after /readyz said 503.
    first_refused = next(a for a in attempts if a.refused)
    first_503_seen = next(a for a in attempts if a.status == 503)
    assert first_503_seen.ended < first_refused.started
    assert attempts[-1].refused
    # The request in the kernel's backlog when the listener closes is reset, not refused.
    assert after_close
    assert after_close[-1].refused


@pytest.mark.parametrize(
    ("second", "args"),
    [
        pytest.param(signal.SIGTERM, [], id="SIGTERM"),
        pytest.param(signal.SIGINT, [], id="SIGINT"),
        pytest.param(signal.SIGINT, ["--workers", "2"], id="workers-SIGINT"),
    ],
)
def test_a_second_signal_during_the_drain_skips_the_rest_of_it(
    sandboxes: Sandboxes, tmp_path: Path, second: signal.Signals, args: list[str]
) -> None:
    long_drain = 120  # far longer than the hang guard: only the second signal can end it
    env = _env(sandboxes, tmp_path, long_drain)
    with serve_process(env, tmp_path, "drain2", args=args) as served:
        served.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CLIENT_GUARD
        with httpx.Client(base_url=served.base_url, timeout=5.0) as client:
            while client.get("/readyz").status_code != 503:
                assert time.monotonic() < deadline, "/readyz never failed"
                time.sleep(0.05)
            while "shutdown_drain" not in [line["event"] for line in served.log_lines()]:
                assert time.monotonic() < deadline, "the drain never began"
                time.sleep(0.05)
            assert client.get("/healthz").status_code == 200  # still serving: draining
        served.proc.send_signal(second)
        code = _exit_code(served, EXIT_GUARD)

    assert code in (0, -signal.SIGTERM, -signal.SIGINT), served.stderr.read_text()
    events = [line["event"] for line in served.log_lines()]
    assert events.index("shutdown_drain") < events.index("Shutting down")
    assert "Application shutdown complete." in events

"""Request headers on a real `points-gateway serve`: capped in bytes (431) and in time (closed).

The gateway's own 431 (app/security/hardening.py) can act only once uvicorn has buffered the whole
header; app/http_protocol.py stops reading at the cap, and closes connections whose headers take
longer than POINTS_LIMITS__HEADER_TIMEOUT. No latency is asserted: waits are bounded, with slack.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.http_protocol import REQUEST_LINE_ALLOWANCE
from app.sandbox.demo import DEMO_ACCOUNTS
from tests.support.processes import (
    KEY,
    Sandboxes,
    ServeProcess,
    db_upgrade,
    gateway_env,
    running_sandboxes,
    serve_process,
    stop,
)
from tests.support.raw_http import (
    MIB,
    connect,
    parse_replies,
    read_replies,
    read_until_closed,
    request,
    rss_mib,
)

pytestmark = pytest.mark.integration

MAX_HEADERS = 16_384  # POINTS_LIMITS__MAX_HEADER_BYTES's default
HEADER_TIMEOUT = 2.0
SLACK = 10.0  # seconds a close may lag behind its timeout on a busy machine
FLOOD_CLIENTS = 4
FLOOD_BYTES = 100 * MIB
FLOOD_DEADLINE = 30.0  # seconds the whole flood may last
FLOOD_ATTEMPTS = 500  # per client, at most: the flood lasts until enough probes have answered
PROBES_DURING = 5
RSS_GROWTH_MIB = 16.0
HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: "
CHUNK = b"a" * 65536


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with running_sandboxes() as running:
        yield running


def limited_env(sandboxes: Sandboxes, data: Path) -> dict[str, str]:
    env = {
        **gateway_env(sandboxes.urls, data, KEY),
        "POINTS_LIMITS__HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    db_upgrade(env, data)
    return env


@pytest.fixture(scope="module")
def served(
    sandboxes: Sandboxes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("header-limits")
    with serve_process(limited_env(sandboxes, data), data, "header-limits") as process:
        yield process


def assert_refused_by_the_server(data: bytes, closed: bool) -> None:
    """The protocol's 431: problem+json, `Connection: close`, and the connection closed."""
    assert closed, "the server kept the connection open"
    (reply,) = parse_replies(data)
    assert reply.status == 431, data[:200]
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["connection"] == "close"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.json()["code"] == "headers_too_large"
    assert reply.json()["detail"] == f"Headers are limited to {MAX_HEADERS} bytes."
    # The app never saw the request: its middleware would have added a request id.
    assert "x-request-id" not in reply.headers


# --- the flood ---------------------------------------------------------------------------------


def flood(base_url: str, deadline: float) -> tuple[int, bytes, bool]:
    """Try to send a FLOOD_BYTES header; how much went out, and what came back."""
    sent = 0
    with connect(base_url) as sock:
        try:
            sock.sendall(HEAD)
            while sent < FLOOD_BYTES and time.monotonic() < deadline:
                sock.sendall(CHUNK)
                sent += len(CHUNK)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off: what we want
        data, closed = read_until_closed(sock, within=SLACK)
    return sent, data, closed


class Sampler:
    """Samples a process's RSS and /healthz from another client while something runs."""

    def __init__(self, served: ServeProcess) -> None:
        self._served = served
        self.rss: list[float] = []
        self.health: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._memory),
            threading.Thread(target=self._probe),
        ]

    def __enter__(self) -> Sampler:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(SLACK)

    def _memory(self) -> None:
        while not self._stop.is_set():
            self.rss.append(rss_mib(self._served.proc.pid))
            self._stop.wait(0.02)

    def _probe(self) -> None:
        while not self._stop.is_set():
            # A fresh connection each time, as a health checker opens.
            try:
                response = httpx.get(f"{self._served.base_url}/healthz", timeout=SLACK)
            except httpx.TransportError:
                self.health.append(0)
            else:
                self.health.append(response.status_code)
            self._stop.wait(0.05)


def attacker(base_url: str, sampled: Sampler, results: list[tuple[int, bytes, bool]]) -> None:
    """Flood again and again, until enough health probes have been answered meanwhile."""
    deadline = time.monotonic() + FLOOD_DEADLINE
    for _ in range(FLOOD_ATTEMPTS):
        results.append(flood(base_url, deadline))
        if len(sampled.health) >= PROBES_DURING or time.monotonic() > deadline:
            return


def test_a_flood_of_huge_headers_is_cut_off_with_431_and_memory_stays_flat(
    served: ServeProcess,
) -> None:
    assert httpx.get(f"{served.base_url}/healthz", timeout=SLACK).status_code == 200
    before = rss_mib(served.proc.pid)
    results: list[tuple[int, bytes, bool]] = []
    with Sampler(served) as sampled:
        attackers = [
            threading.Thread(target=attacker, args=(served.base_url, sampled, results))
            for _ in range(FLOOD_CLIENTS)
        ]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join(FLOOD_DEADLINE + 2 * SLACK)
        during = list(sampled.health)
    after = httpx.get(f"{served.base_url}/healthz", timeout=SLACK)

    assert results
    for sent, data, closed in results:
        # Kernel buffers take a few MiB more than the server reads; far from the 100 MiB.
        assert sent < FLOOD_BYTES // 4, f"{sent / MIB:.1f} MiB went out before the cut"
        assert_refused_by_the_server(data, closed)
    growth = max(sampled.rss) - before
    assert growth < RSS_GROWTH_MIB, f"RSS grew {growth:.1f} MiB under the flood"
    assert len(during) >= PROBES_DURING, "the flood ended before the health probes"
    assert set(during) == {200}
    assert after.status_code == 200


@pytest.mark.parametrize(
    "start",
    [HEAD, b"GET /healthz?q="],
    ids=["header", "request-line"],
)
def test_incomplete_headers_over_the_cap_get_431_without_waiting_for_the_end(
    served: ServeProcess, start: bytes
) -> None:
    with connect(served.base_url) as sock:
        sock.sendall(start + b"a" * (MAX_HEADERS + REQUEST_LINE_ALLOWANCE + 1))
        data, closed = read_until_closed(sock, within=SLACK)
    assert_refused_by_the_server(data, closed)


def test_headers_near_the_cap_reach_the_app(served: ServeProcess) -> None:
    under = request(headers={"X-Pad": "a" * (MAX_HEADERS - 200)})
    over = request(headers={"X-Pad": "a" * (MAX_HEADERS + 200)})
    with connect(served.base_url) as sock:
        sock.sendall(under)
        (ok,) = read_replies(sock, 1)
        sock.sendall(over)  # over the app's cap, within the raw allowance: the app answers
        (refused,) = read_replies(sock, 1)
    assert ok.status == 200, ok.body
    assert refused.status == 431, refused.body
    assert refused.json()["code"] == "headers_too_large"
    assert "x-request-id" in refused.headers


# --- slow headers ------------------------------------------------------------------------------


def test_connections_trickling_headers_are_closed_after_the_header_timeout(
    served: ServeProcess,
) -> None:
    opened = time.monotonic()
    trickling = [connect(served.base_url) for _ in range(20)]
    silent = [connect(served.base_url) for _ in range(5)]
    closed_by_server: set[socket.socket] = set()
    answered = b""
    deadline = time.monotonic() + HEADER_TIMEOUT + SLACK
    try:
        sent = 0
        while len(closed_by_server) < len(trickling) + len(silent):
            assert time.monotonic() < deadline, (
                f"{len(closed_by_server)} of {len(trickling) + len(silent)} closed "
                f"{SLACK} s after the header timeout"
            )
            for sock in trickling:
                if sock not in closed_by_server:
                    byte = HEAD[sent : sent + 1] or b"a"
                    try:
                        sock.sendall(byte)
                    except OSError:
                        closed_by_server.add(sock)
            sent += 1
            time.sleep(0.2)  # five bytes a second, each one well within the timeout
            for sock in trickling + silent:
                if sock in closed_by_server:
                    continue
                sock.setblocking(False)
                try:
                    chunk = sock.recv(1024)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                answered += chunk
                if not chunk:
                    closed_by_server.add(sock)
    finally:
        for sock in trickling + silent:
            sock.close()
    # Not before the timeout (a busy machine only delays the close), and without an answer.
    assert time.monotonic() - opened >= HEADER_TIMEOUT
    assert answered == b""


def test_idle_keep_alive_outlasts_the_header_timeout(served: ServeProcess) -> None:
    with connect(served.base_url) as sock:
        sock.sendall(request())
        (first,) = read_replies(sock, 1)
        # Idle between requests is uvicorn's keep-alive (5 s), not the header timeout.
        time.sleep(HEADER_TIMEOUT + 1)
        sock.sendall(request())
        (second,) = read_replies(sock, 1)
    assert (first.status, second.status) == (200, 200)


def test_headers_sent_in_pieces_within_the_timeout_are_served(served: ServeProcess) -> None:
    whole = request(headers={"X-Pad": "a" * 1000})
    with connect(served.base_url) as sock:
        for start in range(0, len(whole), 300):
            sock.sendall(whole[start : start + 300])
            time.sleep(0.02)
        (reply,) = read_replies(sock, 1)
    assert reply.status == 200


# --- what must keep working --------------------------------------------------------------------


def test_keep_alive_and_pipelined_requests_are_served(served: ServeProcess) -> None:
    # 40 requests of ~1 KiB each in one write: more than the raw cap, none of them over it.
    pipelined = b"".join(
        request(headers={"X-Pad": "a" * 1000, "X-Request-ID": f"pipelined-{n}"}) for n in range(40)
    )
    assert len(pipelined) > MAX_HEADERS + REQUEST_LINE_ALLOWANCE
    with connect(served.base_url) as sock:
        sock.sendall(pipelined)
        replies = read_replies(sock, 40)
        for _ in range(3):
            sock.sendall(request())
            replies += read_replies(sock, 1)
    assert [r.status for r in replies] == [200] * 43
    assert [r.headers["x-request-id"] for r in replies[:40]] == [
        f"pipelined-{n}" for n in range(40)
    ]


def test_a_large_body_under_its_cap_after_complete_headers_is_served(
    served: ServeProcess,
) -> None:
    # JSON allows whitespace: a valid account padded to 60 KiB (the body cap is 64 KiB).
    account = json.dumps(DEMO_ACCOUNTS["alice"]["gafapay"]).encode()
    body = account[:-1] + b" " * (60 * 1024) + b"}"
    head = (
        b"PUT /users/alice/accounts/gafapay HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(served.base_url) as sock:
        sock.sendall(head + body)
        (linked,) = read_replies(sock, 1)
        sock.sendall(request())
        (after,) = read_replies(sock, 1)
    assert linked.status in (200, 201), linked.body
    assert after.status == 200


def test_every_worker_of_serve_workers_caps_headers(sandboxes: Sandboxes, tmp_path: Path) -> None:
    env = limited_env(sandboxes, tmp_path)
    with serve_process(env, tmp_path, "workers", args=["--workers", "2"]) as process:
        try:
            for _ in range(4):  # connections spread over both workers
                with connect(process.base_url) as sock:
                    sock.sendall(HEAD + b"a" * (MAX_HEADERS + REQUEST_LINE_ALLOWANCE + 1))
                    data, closed = read_until_closed(sock, within=SLACK)
                assert_refused_by_the_server(data, closed)
            with connect(process.base_url) as sock:
                sock.sendall(HEAD)
                data, closed = read_until_closed(sock, within=HEADER_TIMEOUT + SLACK)
            assert (data, closed) == (b"", True)
        finally:
            stop(process)

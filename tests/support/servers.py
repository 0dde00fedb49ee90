"""Real servers on 127.0.0.1: both emulators and the gateway, with its production transport.

The servers run in a background thread with its own event loop (a `ServerGroup`), so tests talk
to them over real sockets with their own clients, on their own loops.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.sandbox.demo import (
    DEMO_GAFAPAY_TOKEN,
    demo_accounts,
    demo_sandboxes,
    demo_settings,
)
from app.sandbox.gafapay import GafapaySandbox, create_gafapay_app
from app.sandbox.iamport import IamportSandbox, create_iamport_app
from app.sandbox.servers import Served, ServerGroup, bind
from app.settings import Settings
from tests.conftest import PLAIN, PROBLEM

HOST = "127.0.0.1"
PROVIDER_TIMEOUT = 1.5
REQUEST_DEADLINE = 3.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def gateway_settings(iamport_url: str, gafapay_url: str, **benepia_overrides: object) -> Settings:
    """The demo settings with short provider timeouts (and any benepia field replaced)."""
    providers = copy.deepcopy(demo_settings(iamport_url, gafapay_url).providers)
    for section in providers.values():
        section["timeout"] = PROVIDER_TIMEOUT
    providers["benepia"].update(benepia_overrides)
    return demo_settings(
        iamport_url,
        gafapay_url,
        None,  # no defined provider
        providers=providers,
        request_deadline=REQUEST_DEADLINE,
        **PLAIN,
    )


def closed_port() -> int:
    """A port nothing listens on (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def serving(served: Sequence[Served]) -> Iterator[None]:
    """Serve `served` in a thread with its own event loop until the block ends."""
    group = ServerGroup(served)
    loop = asyncio.new_event_loop()
    failures: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(group.serve())
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="integration-servers", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not group.started.is_set():
            if not thread.is_alive() or time.monotonic() > deadline:
                loop.call_soon_threadsafe(group.stop)
                thread.join(STOP_TIMEOUT)
                raise RuntimeError(f"servers did not start: {failures or 'timed out'}")
            time.sleep(0.01)
        yield
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(group.stop)
            thread.join(STOP_TIMEOUT)
        for s in served:
            s.sock.close()
        stopped = not thread.is_alive()
        if stopped:
            loop.close()
    assert stopped, f"servers did not stop within {STOP_TIMEOUT} s"
    assert not failures, f"servers failed: {failures}"


@dataclass(frozen=True, slots=True)
class Stack:
    """The running servers: base URLs and the emulators' state."""

    gateway_url: str
    iamport_url: str
    gafapay_url: str
    iamport: IamportSandbox
    gafapay: GafapaySandbox


def _served(app: ASGIApp) -> Served:
    return Served(app, bind(HOST, 0))


def _reset(stack: Stack) -> None:
    stack.iamport.reset()
    stack.gafapay.reset()
    stack.gafapay.tokens.clear()
    stack.gafapay.tokens.add(DEMO_GAFAPAY_TOKEN)


@pytest.fixture(scope="session")
def running_stack() -> Iterator[Stack]:
    """Both emulators and the gateway (no transport injected: the aiohttp one), once."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = _served(create_iamport_app(iamport))
    gafapay_app = _served(create_gafapay_app(gafapay))
    settings = gateway_settings(iamport_app.url, gafapay_app.url)
    gateway = _served(create_app(settings, store=MemoryAccountStore(demo_accounts())))
    with serving([iamport_app, gafapay_app, gateway]):
        yield Stack(gateway.url, iamport_app.url, gafapay_app.url, iamport, gafapay)


@pytest.fixture
def stack(running_stack: Stack) -> Iterator[Stack]:
    """The running servers, with the emulators' faults, counters and tokens reset around a test."""
    _reset(running_stack)
    yield running_stack
    _reset(running_stack)


@pytest.fixture(scope="session")
def refused_gateway_url(running_stack: Stack) -> Iterator[str]:
    """A second gateway whose benepia base URL is a closed port (GafaPay is the real emulator)."""
    settings = gateway_settings(
        running_stack.iamport_url,
        running_stack.gafapay_url,
        base_url=f"http://{HOST}:{closed_port()}",
    )
    gateway = _served(create_app(settings, store=MemoryAccountStore(demo_accounts())))
    with serving([gateway]):
        yield gateway.url


# Guards every call: a hung upstream must never hang the gateway's answer.
CLIENT_TIMEOUT = 8.0


async def set_fault(base_url: str, key: str, **knobs: object) -> None:
    """Install a fault through the emulator's own admin route."""
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as admin:
        resp = await admin.post("/__sandbox/faults", json={"key": key, **knobs})
    assert resp.status_code == 200, resp.text


def entries(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["provider"]: b for b in body["balances"]}


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["code"] == code
    assert body["status"] == status
    return body

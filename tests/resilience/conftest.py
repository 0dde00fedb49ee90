"""Cache-backend fixtures: every cache test runs on process memory and on the real Redis.

`cache_backend` is parametrized over both backends; `private_redis` is a throwaway
`redis-server` of the test's own, for tests that kill Redis and start it again.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.resilience.cache import BalanceCache, MemoryBalanceCache, RedisBalanceCache
from tests.conftest import (
    gafapay_ok,
    make_settings,
    require_services,
)

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
# What RedisBalanceCache.from_url sets: a slow Redis must not hold a request.
REDIS_TIMEOUT = 0.25
PRIVATE_START_TIMEOUT = 10.0
PRIVATE_STOP_TIMEOUT = 5.0

RedisCacheFactory = Callable[..., Awaitable[RedisBalanceCache]]


# --- upstream mocks and settings shared by the API-level resilience tests ----------------------


def bob_ok() -> httpx.Response:
    """Bob's GafaPay balance: 7 points."""
    return gafapay_ok("7", user_id="0b0b")


def gafapay_timeout_providers(gafapay_timeout: float) -> dict[str, Any]:
    """The test providers settings with GafaPay's timeout replaced."""
    providers: dict[str, Any] = copy.deepcopy(make_settings().providers)
    providers["gafapay"]["timeout"] = gafapay_timeout
    return providers


def _unavailable(reason: str) -> NoReturn:
    """Fail under POINTS_REQUIRE_SERVICES=1 (CI), else skip: Redis is a service, not a given."""
    if require_services():
        pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def redis_client(url: str, *, timeout: float = REDIS_TIMEOUT) -> Redis:
    """A client configured like RedisBalanceCache.from_url's."""
    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
    )


async def _check_reachable(url: str) -> None:
    probe = redis_client(url, timeout=2.0)
    try:
        await probe.ping()
    except (RedisError, OSError) as exc:
        _unavailable(f"Redis at {url} is not reachable ({type(exc).__name__}: {exc})")
    finally:
        await probe.aclose()


async def _delete_prefixed(url: str, prefix: str) -> None:
    cleaner = redis_client(url, timeout=2.0)
    try:
        keys = [key async for key in cleaner.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await cleaner.delete(*keys)
    finally:
        await cleaner.aclose()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own on the shared Redis."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_caches(redis_prefix: str) -> AsyncIterator[RedisCacheFactory]:
    """Make RedisBalanceCache instances on the shared Redis, all under `redis_prefix`.

    Nothing connects until the first one is made (so memory-only tests never need Redis);
    every key under the prefix is deleted and every client closed afterwards.
    """
    made: list[RedisBalanceCache] = []

    async def make(*, retry_interval: float = 5.0) -> RedisBalanceCache:
        if not made:
            await _check_reachable(SHARED_REDIS_URL)
        client = redis_client(SHARED_REDIS_URL)
        cache = RedisBalanceCache(client, prefix=redis_prefix, retry_interval=retry_interval)
        made.append(cache)
        return cache

    try:
        yield make
    finally:
        if made:
            for cache in made:
                await cache.aclose()  # a no-op if an app's lifespan already closed it
            await _delete_prefixed(SHARED_REDIS_URL, redis_prefix)


@pytest.fixture
async def shared_redis(redis_prefix: str) -> AsyncIterator[Redis]:
    """A plain client on the shared Redis, to look at or plant raw values under `redis_prefix`.

    Fails or skips like `cache_backend` when Redis is down; the prefix is cleaned up after.
    """
    await _check_reachable(SHARED_REDIS_URL)
    client = redis_client(SHARED_REDIS_URL, timeout=2.0)
    try:
        yield client
    finally:
        await client.aclose()
        await _delete_prefixed(SHARED_REDIS_URL, redis_prefix)


@pytest.fixture(params=["memory", "redis"])
async def cache_backend(
    request: pytest.FixtureRequest, redis_caches: RedisCacheFactory
) -> AsyncIterator[BalanceCache]:
    """Each backend: process memory, and Redis under a prefix of the test's own."""
    if request.param == "memory":
        memory = MemoryBalanceCache()
        yield memory
        await memory.aclose()
        return
    yield await redis_caches()


# --- a private redis-server, for kill tests ---------------------------------------------------


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """One `redis-server` subprocess on a fixed port; it can be killed and started again."""

    def __init__(self, executable: str, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._executable = executable
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start it (on the same port every time) and wait, bounded, until PING answers."""
        assert not self.running, "already running"
        self.starts += 1
        self._close_log()
        self._log = (self._workdir / f"redis-{self.starts}.log").open("wb")
        self._process = subprocess.Popen(
            [
                self._executable,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self._workdir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + PRIVATE_START_TIMEOUT
        while not _pings(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self._workdir / f"redis-{self.starts}.log").read_text(errors="replace")
                pytest.fail(f"redis-server did not answer PING on port {self.port}:\n{log}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to its clients."""
        process = self._process
        assert process is not None, "never started"
        assert process.poll() is None, "not running"
        process.send_signal(signal.SIGKILL)
        process.wait(PRIVATE_STOP_TIMEOUT)

    def stop(self) -> None:
        """Terminate it if it runs (SIGTERM, then SIGKILL if it lingers)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(PRIVATE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(PRIVATE_STOP_TIMEOUT)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own on a free port (no persistence); always stopped after."""
    executable = shutil.which("redis-server")
    if executable is None:
        _unavailable(f"redis-server is not on PATH ({os.environ.get('PATH', '')})")
    server = PrivateRedis(executable, free_port(), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()

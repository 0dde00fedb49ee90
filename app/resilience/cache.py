"""The balance cache: in process memory (embedded default) or Redis shared by every replica."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("points_gateway.cache")


@dataclass(frozen=True, slots=True)
class CachedBalance:
    """A balance as it was fetched, and when it was stored (wall-clock seconds)."""

    points: Decimal
    unit: str
    as_of: datetime
    stored_at: float
    details: Mapping[str, Decimal] | None = None

    def encode(self) -> bytes:
        """Compact JSON for the backend."""
        value: dict[str, object] = {
            "p": str(self.points),
            "u": self.unit,
            "a": self.as_of.isoformat(),
            "s": self.stored_at,
        }
        if self.details:
            value["d"] = {name: str(amount) for name, amount in self.details.items()}
        return json.dumps(value, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> CachedBalance | None:
        """The value in `raw`, or None if it is not one (a foreign or older format)."""
        try:
            data = json.loads(raw)
            details = {str(k): Decimal(v) for k, v in data["d"].items()} if "d" in data else None
            value = cls(
                Decimal(data["p"]),
                str(data["u"]),
                datetime.fromisoformat(data["a"]),
                float(data["s"]),
                details,
            )
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation, RecursionError):
            return None
        amounts = [value.points, *(value.details or {}).values()]
        if not all(a.is_finite() for a in amounts) or value.as_of.tzinfo is None:
            return None
        return value


class BalanceCache(Protocol):
    """Where cached balances live; a backend that fails behaves as a miss, never an error."""

    async def get(self, key: str) -> CachedBalance | None: ...

    async def set(self, key: str, value: CachedBalance, *, keep_for: float) -> None: ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    @property
    def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryBalanceCache:
    """A bounded LRU dict with per-entry expiry; per process."""

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, CachedBalance]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> CachedBalance | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: CachedBalance, *, keep_for: float) -> None:
        self._entries[key] = (self._clock() + keep_for, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    @property
    def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._entries.clear()


class RedisBalanceCache:
    """Redis shared by every replica; while Redis is unreachable it is skipped, not waited on.

    A failed command (an error, or no answer within the socket timeout) counts one failure and
    answers as a miss; `failures_to_skip` in a row skip Redis for `retry_interval`, after which
    the next command tries it again (one more failure skips it again, a success closes the
    count). So one slow read costs that read, not seconds of bypass, and a Redis that is back is
    used again within the interval. Pooled connections are dropped when Redis is skipped, and a
    command on a connection broken since (a restarted Redis) is retried once on a new one.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "pg:bal:v1:",
        retry_interval: float = 2.0,
        failures_to_skip: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._retry_interval = retry_interval
        self._failures_to_skip = failures_to_skip
        self._clock = clock
        self._failures = 0
        self._skip_until = 0.0
        self._last_logged = -retry_interval

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25) -> RedisBalanceCache:
        """A cache on `url`; short socket timeouts so a slow Redis cannot hold a request."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # A pooled connection idle this long is checked before use, and one that breaks
            # (Redis restarted under it) is replaced and the command sent again, once; a
            # timeout is not retried: one slow read must not become two.
            health_check_interval=2,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return cls(client)

    @property
    def healthy(self) -> bool:
        """Whether the last command reached Redis (`/readyz` says `degraded` otherwise)."""
        return self._failures == 0

    def _skipping(self) -> bool:
        return self._clock() < self._skip_until

    def _succeeded(self) -> None:
        self._failures = 0

    async def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        if self._failures < self._failures_to_skip:
            return
        now = self._clock()
        self._skip_until = now + self._retry_interval
        # Idle connections that may be broken are not kept for when Redis is back.
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect(inuse_connections=False)
        # Logged once per interval: an outage must not flood the logs.
        if now - self._last_logged >= self._retry_interval:
            self._last_logged = now
            log.warning(
                "redis %s failed (%s); serving without the shared cache", what, type(exc).__name__
            )

    async def get(self, key: str) -> CachedBalance | None:
        value, _ = await self.read(key)
        return value

    async def read(self, key: str) -> tuple[CachedBalance | None, bool]:
        """The value under `key`, and whether Redis answered (a skip or a failure did not)."""
        if self._skipping():
            return None, False
        try:
            raw = await self._client.get(self._prefix + key)
        except ResponseError:
            self._succeeded()
            return None, True  # one foreign value (e.g. WRONGTYPE) is a miss, not an outage
        except (RedisError, OSError, TimeoutError) as exc:
            await self._failed(exc, "read")
            return None, False
        self._succeeded()
        return (CachedBalance.decode(raw) if isinstance(raw, bytes) else None), True

    async def set(self, key: str, value: CachedBalance, *, keep_for: float) -> None:
        if self._skipping():
            return
        try:
            await self._client.set(
                self._prefix + key, value.encode(), px=max(1, int(keep_for * 1000))
            )
        except (RedisError, OSError, TimeoutError) as exc:
            await self._failed(exc, "write")
            return
        self._succeeded()

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await self._client.delete(*(self._prefix + k for k in keys))
        except (RedisError, OSError, TimeoutError) as exc:
            await self._failed(exc, "delete")
            return
        self._succeeded()

    async def aclose(self) -> None:
        await self._client.aclose()

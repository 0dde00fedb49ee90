"""Per-principal rate limits with the `limits` library, in memory or in the shared Redis."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from app.errors import RateLimited

log = logging.getLogger("points_gateway.ratelimit")


class RateLimitExceeded(RateLimited):
    """429 with the RateLimit-* numbers of the window that was exceeded."""

    def __init__(self, *, limit: int, reset_after: int, counted: str = "requests") -> None:
        super().__init__(
            f"More than {limit} {counted} in the window; retry after {reset_after} s.",
            retry_after=reset_after,
        )
        self.limit = limit
        self.reset_after = reset_after

    def headers(self) -> dict[str, str]:
        """RateLimit-* headers (IETF draft) to send with the 429."""
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(self.retry_after),
        }


@dataclass(slots=True)
class _Windows:
    index: int  # which fixed window `current` counts
    previous: int
    current: int


class LocalSlidingWindow:
    """The sliding-window counter of `limits`, in this process, without its locks and tasks.

    Why not `limits`' MemoryStorage: it takes an asyncio lock and keeps expiry bookkeeping per
    hit, about 4% of a request's CPU at load; one event loop needs neither. The estimate is the
    same: the previous window's count, weighted by how much of it still overlaps, plus the
    current one's.
    """

    def __init__(self, amount: int, period: float, clock: Callable[[], float] = time.time) -> None:
        self._amount = amount
        self._period = period
        self._clock = clock
        self._keys: dict[str, _Windows] = {}
        self._pruned_at = -1

    def hit(self, key: str) -> float | None:
        """Count one request; None if allowed, else the seconds until one would be."""
        now = self._clock()
        index = int(now // self._period)
        if index != self._pruned_at:  # once per window: forget keys idle for two windows
            self._pruned_at = index
            self._keys = {k: w for k, w in self._keys.items() if w.index >= index - 1}
        windows = self._keys.get(key)
        if windows is None:
            windows = self._keys[key] = _Windows(index, 0, 0)
        elif windows.index != index:
            windows.previous = windows.current if windows.index == index - 1 else 0
            windows.current, windows.index = 0, index
        elapsed = now - index * self._period
        overlap = 1 - elapsed / self._period
        if windows.previous * overlap + windows.current + 1 <= self._amount:
            windows.current += 1
            return None
        return self._wait(windows, elapsed)

    def _wait(self, windows: _Windows, elapsed: float) -> float:
        room = self._amount - 1
        if windows.current > room:
            # Only once this window is the previous one and has faded enough.
            fade = self._period * (1 - room / windows.current)
            return self._period - elapsed + fade
        # The previous window must fade until the estimate leaves room for one more.
        fade = self._period * (1 - (room - windows.current) / windows.previous)
        return min(max(fade - elapsed, 0.0), self._period - elapsed)


class RateLimiter:
    """A sliding-window limit per key; if the shared store fails, requests pass (logged once)."""

    def __init__(self, limit: str, *, redis_url: str | None = None) -> None:
        self._item: RateLimitItem = parse(limit)
        self._local: LocalSlidingWindow | None = None
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        if redis_url:
            storage: Storage = RedisStorage(
                redis_url.replace("redis://", "async+redis://", 1), implementation="redispy"
            )
            # Sliding-window counter: O(1) per request (a moving window keeps every timestamp).
            self._limiter = SlidingWindowCounterRateLimiter(storage)
        else:
            self._local = LocalSlidingWindow(self._item.amount, self._item.get_expiry())
        self._last_logged = 0.0

    async def check(self, key: str) -> None:
        """Count one request for `key`; raise RateLimitExceeded past the limit."""
        if self._local is not None:
            wait = self._local.hit(self._item.key_for(key))
            if wait is not None:
                raise RateLimitExceeded(
                    limit=self._item.amount, reset_after=max(1, math.ceil(wait))
                )
            return
        assert self._limiter is not None
        try:
            allowed = await self._limiter.hit(self._item, key)
            if allowed:
                return
            reset_at, _ = await self._limiter.get_window_stats(self._item, key)
        except Exception as exc:  # the storage's own errors vary by backend
            now = time.monotonic()
            if now - self._last_logged > 5:
                self._last_logged = now
                log.warning("rate-limit storage failed (%s); not limiting", type(exc).__name__)
            return
        reset_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimitExceeded(limit=self._item.amount, reset_after=reset_after)

"""Per-principal rate limits with the `limits` library, in memory or in the shared Redis."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from app.errors import RateLimited

log = logging.getLogger("points_gateway.ratelimit")


class RateLimitExceeded(RateLimited):
    """429 with the RateLimit-* numbers of the window that was exceeded."""

    def __init__(self, *, limit: int, reset_after: int) -> None:
        super().__init__(
            f"More than {limit} requests in the window; retry after {reset_after} s.",
            retry_after=reset_after,
        )
        self.limit = limit

    def headers(self) -> dict[str, str]:
        """RateLimit-* headers (IETF draft) to send with the 429."""
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(self.retry_after),
        }


class RateLimiter:
    """A sliding-window limit per key; if the shared store fails, requests pass (logged once)."""

    def __init__(self, limit: str, *, redis_url: str | None = None) -> None:
        self._item: RateLimitItem = parse(limit)
        self._storage: Storage = (
            RedisStorage(
                redis_url.replace("redis://", "async+redis://", 1), implementation="redispy"
            )
            if redis_url
            else MemoryStorage()
        )
        # Sliding-window counter: O(1) per request (a moving window keeps every timestamp).
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._last_logged = 0.0

    async def check(self, key: str) -> None:
        """Count one request for `key`; raise RateLimitExceeded past the limit."""
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

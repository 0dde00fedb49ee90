"""Failed authentications per client address: past the limit, 429 before credentials are checked."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import parse

from app.security.rate_limit import RateLimiter, RateLimitExceeded

COUNTED = "failed authentications from this address"
_PRUNE_EVERY = 60.0


class FailedAuthLimit:
    """Counts failed authentications per client address, in memory or in the shared Redis.

    The failure that crosses the limit is answered 429, and from then on the address is refused
    before its credentials are looked at, until its Retry-After has passed: no guess is checked
    while it is over. Only that refusal is kept here, in this process, so a request from an
    address that is not over costs one dict lookup and no Redis round trip. With Redis, another
    replica therefore checks one more guess from the address before the shared count refuses it
    there too.
    """

    def __init__(
        self,
        limit: str,
        *,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._amount = parse(limit).amount
        self._counts = RateLimiter(limit, redis_url=redis_url)
        self._clock = clock
        self._refused_until: dict[str, float] = {}
        self._pruned_at = clock()

    def refuse_if_over(self, address: str) -> None:
        """Raise 429 while `address` is over its limit; otherwise do nothing."""
        until = self._refused_until.get(address)
        if until is None:
            return
        wait = until - self._clock()
        if wait > 0:
            raise RateLimitExceeded(
                limit=self._amount, reset_after=max(1, math.ceil(wait)), counted=COUNTED
            )
        del self._refused_until[address]

    async def count(self, address: str) -> None:
        """Count one failed authentication; raise 429 when it crosses the limit."""
        try:
            await self._counts.check(f"failed-auth:{address}")
        except RateLimitExceeded as exc:
            now = self._clock()
            if now - self._pruned_at >= _PRUNE_EVERY:
                self._pruned_at = now
                self._refused_until = {a: t for a, t in self._refused_until.items() if t > now}
            self._refused_until[address] = now + exc.reset_after
            raise RateLimitExceeded(
                limit=exc.limit, reset_after=exc.reset_after, counted=COUNTED
            ) from None

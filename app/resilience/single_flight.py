"""Single-flight: concurrent requests for the same key share one call."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
# A call this close to its end is not joined: it is about to be cut off by the deadline of the
# caller that started it, and a newcomer would inherit that failure.
MIN_REMAINING = 0.05


class SingleFlight(Generic[T]):
    """The first caller for a key starts the call; the others wait for its result."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._calls: dict[str, tuple[asyncio.Task[T], float]] = {}
        self._clock = clock

    async def do(
        self, key: str, call: Callable[[], Awaitable[T]], *, ends_at: float = math.inf
    ) -> T:
        """Join the call in flight for `key`, or start one that ends by `ends_at` at the latest."""
        current = self._calls.get(key)
        if current is not None and current[1] - self._clock() >= MIN_REMAINING:
            task = current[0]
        else:
            task = asyncio.ensure_future(call())
            self._calls[key] = (task, ends_at)
            task.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: one caller giving up (its deadline) must not cancel the call for the others.
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        current = self._calls.get(key)
        if current is not None and current[0] is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an abandoned failure is not reported as lost

    def in_flight(self) -> int:
        """How many distinct calls are running."""
        return len(self._calls)

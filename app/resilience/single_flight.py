"""Single-flight: concurrent requests for the same key share one call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The first caller for a key starts the call; the others wait for its result."""

    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Task[T]] = {}

    async def do(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Join the call in flight for `key`, or start one."""
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: one caller giving up (its deadline) must not cancel the call for the others.
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an abandoned failure is not reported as lost

    def in_flight(self) -> int:
        """How many distinct calls are running."""
        return len(self._calls)

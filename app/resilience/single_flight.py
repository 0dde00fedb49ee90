"""Single-flight: concurrent requests for the same key share one call.

The first caller runs the call in its own task and publishes the outcome on a future the others
wait on. (A task per call, shielded from every caller, cost a task, a shield and a loop turn on
every uncached fetch, nearly all of which nobody joins.) If the first caller is cancelled, its
call ends with it and the callers that joined start again: no call outlives everyone who wanted
it.
"""

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
    """The first caller for a key runs the call; the others wait for its result."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._calls: dict[str, tuple[asyncio.Future[T], float]] = {}
        self._clock = clock

    async def do(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        *,
        ends_at: float = math.inf,
    ) -> T:
        """Join the call in flight for `key`, or run one that ends by `ends_at` at the latest.

        A caller that joined waits until its own `ends_at` at the most (then TimeoutError); the
        caller that runs the call is bound by the call's own deadline, which `call` must hold.
        """
        while True:
            current = self._calls.get(key)
            if current is None or current[1] - self._clock() < MIN_REMAINING:
                return await self._run(key, call, ends_at)
            shared = current[0]
            try:
                # Shielded: one joiner giving up must not cancel the outcome for the others.
                left = ends_at - self._clock()
                async with asyncio.timeout(None if left == math.inf else max(left, 0)):
                    return await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not shared.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The caller running it was cancelled, this one was not: start again.

    async def _run(self, key: str, call: Callable[[], Awaitable[T]], ends_at: float) -> T:
        shared: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls[key] = (shared, ends_at)
        try:
            result = await call()
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: nobody may have joined, and that is not a loss
            raise
        else:
            shared.set_result(result)
            return result
        finally:
            current = self._calls.get(key)
            if current is not None and current[0] is shared:
                del self._calls[key]

    def in_flight(self) -> int:
        """How many distinct calls are running."""
        return len(self._calls)

"""Retrying transient provider failures: few, jittered, inside the deadline, within a budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina

from app.errors import UpstreamError, UpstreamRateLimited, UpstreamUnreachable
from app.resilience.retry_budget import RetryBudget

T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({502, 503, 504})
# A retry is pointless unless this much of the deadline is left for the attempt itself.
MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many attempts and how long to wait between them (defaults: the resilience settings)."""

    attempts: int
    wait_initial: float
    wait_max: float


def _first_wait(policy: RetryPolicy) -> float:
    """stamina's first backoff: the initial wait plus up to one jitter's worth."""
    return min(policy.wait_max, policy.wait_initial + random.uniform(0, policy.wait_initial))  # noqa: S311


def is_retryable(exc: BaseException) -> bool:
    """Connect failures, 502/503/504 and 429: never rejections, auth failures or bad bodies."""
    if isinstance(exc, UpstreamUnreachable | UpstreamRateLimited):
        return True
    return isinstance(exc, UpstreamError) and exc.upstream_status in RETRYABLE_STATUSES


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget,
    deadline_at: float,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call`, retrying what `is_retryable` allows while the deadline and budget allow."""
    made = 1  # attempts made so far, read by backoff()
    total = policy.attempts

    def backoff(exc: Exception) -> bool | float:
        if made >= total or not is_retryable(exc):
            return False
        wait = exc.retry_after if isinstance(exc, UpstreamRateLimited) else None
        if (wait or 0) + MIN_ATTEMPT_SECONDS >= deadline_at - clock():
            return False  # honouring Retry-After would overrun the deadline: answer now instead
        if not budget.try_spend():
            return False
        return float(wait) if wait else True

    budget.record_call()
    # The first attempt runs bare: stamina builds its retry machinery (tenacity) for every call,
    # about 35 µs, and nearly every call succeeds the first time. A retryable first failure
    # re-enters below, where stamina owns the waits and the remaining attempts.
    try:
        return await call()
    except Exception as exc:
        decision = backoff(exc)
        if decision is False:
            raise
    await asyncio.sleep(decision if decision is not True else _first_wait(policy))
    async for attempt in stamina.retry_context(
        on=backoff,
        attempts=total - 1,
        timeout=None,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_initial,
    ):
        with attempt:
            made = attempt.num + 1
            return await call()
    raise AssertionError("unreachable: stamina re-raises the last failure")

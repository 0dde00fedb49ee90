"""A circuit breaker per provider: closed, open (fail fast), half-open (one probe)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.errors import ProviderUnavailable

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When to open and how long to stay open (defaults: the resilience settings)."""

    consecutive_failures: int
    failure_rate: float
    window: float
    min_calls: int
    open_for: float


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What the breaker shows in GET /providers and metrics."""

    state: State
    consecutive_failures: int
    retry_after: int | None


class CircuitBreaker:
    """Opens after N consecutive failures or a failure rate over a window; probes to close."""

    def __init__(
        self,
        provider: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._policy = policy
        self._clock = clock
        self._state: State = "closed"
        self._consecutive = 0
        # Read only while open or half-open, and record_failure sets both on the way there.
        self._opened_at = 0.0
        self._probing = False
        self._outcomes: deque[tuple[float, bool]] = deque()

    def before_call(self) -> None:
        """Let the call through, or fail fast with 503 provider_unavailable while open."""
        if self._state == "closed":
            return
        remaining = self._opened_at + self._policy.open_for - self._clock()
        if self._state == "open" and remaining <= 0:
            self._state = "half_open"
        if self._state == "half_open" and not self._probing:
            self._probing = True
            return
        raise ProviderUnavailable(
            f"{self._provider} is failing; the gateway is not calling it for now",
            provider=self._provider,
            retry_after=max(1, math.ceil(remaining)),
        )

    def record_success(self) -> None:
        """A call succeeded: a probe closes the breaker."""
        self._remember(ok=True)
        self._consecutive = 0
        if self._state == "half_open":
            self._state = "closed"
            self._outcomes.clear()

    def record_failure(self) -> None:
        """A call failed in a way that says the provider is unwell."""
        self._remember(ok=False)
        self._consecutive += 1
        if self._state == "half_open" or self._should_open():
            self._state = "open"
            self._opened_at = self._clock()
            self._probing = False

    def release_probe(self) -> None:
        """A probe ended without a verdict (e.g. the caller went away): allow another."""
        self._probing = False

    @property
    def state(self) -> State:
        """closed, open or half_open (without building a snapshot)."""
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """The current state, for display."""
        retry_after = None
        if self._state != "closed":
            remaining = self._opened_at + self._policy.open_for - self._clock()
            retry_after = max(1, math.ceil(remaining))
        return BreakerSnapshot(self._state, self._consecutive, retry_after)

    def _remember(self, *, ok: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, ok))
        horizon = now - self._policy.window
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _should_open(self) -> bool:
        if self._consecutive >= self._policy.consecutive_failures:
            return True
        calls = len(self._outcomes)
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return calls >= self._policy.min_calls and failures / calls >= self._policy.failure_rate

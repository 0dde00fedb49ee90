"""Caps on in-flight work: per provider (bulkhead), and gateway-wide (load shedding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ProviderUnavailable


class Bulkhead:
    """At most `limit` calls in flight; the next one fails at once instead of queueing."""

    def __init__(self, provider: str, limit: int) -> None:
        self._provider = provider
        self._limit = limit
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of a call, or raise 503 provider_unavailable."""
        if self.in_flight >= self._limit:
            raise ProviderUnavailable(
                f"{self._provider} already has {self._limit} calls in flight",
                provider=self._provider,
                retry_after=1,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

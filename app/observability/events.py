"""What the hot paths report: one call per event, loggers built once, metrics when an app serves.

The fetcher, the iamport token manager and the outbound exchange call these; each writes one log
line (structlog, so the request id bound by the middleware comes along) and counts the event in
the metrics of the app serving the request (`current_metrics()`; none outside a request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from app.errors import GatewayError, UpstreamTimeout
from app.observability import tracing
from app.observability.logging import HotLogger
from app.observability.metrics import current_metrics

upstream_log = HotLogger("points_gateway.upstream")
cache_log = HotLogger("points_gateway.cache")
breaker_log = HotLogger("points_gateway.breaker")

# A provider refusing the user's request is an answer, not trouble: logged at INFO like success.
_QUIET_OUTCOMES = frozenset({"ok", "provider_rejected"})
CacheState = Literal["miss", "refresh", "none"]
"""Why a provider is called: nothing fresh cached, the caller asked `no-cache`, or one-shot."""


@dataclass(slots=True)
class _Attempt:
    upstream_status: int | None = None


# The attempt in progress in this task, so the outbound exchange can note the HTTP status it got.
_attempt: ContextVar[_Attempt | None] = ContextVar("points_upstream_attempt", default=None)
# When the call's own timeout fires (event-loop time): an attempt cancelled by it timed out, and
# is logged and counted as the client sees it (upstream_timeout), not as `cancelled`.
call_deadline: ContextVar[float | None] = ContextVar("points_call_deadline", default=None)


def note_upstream_status(status: int) -> None:
    """The provider answered with `status` (called by the outbound exchange; cheap)."""
    attempt = _attempt.get()
    if attempt is not None:
        attempt.upstream_status = status


def _outcome(exc: BaseException | None) -> str:
    """The outcome label: ok, a gateway error's problem code, internal_error, or cancelled
    (the caller went away before the call's own timeout)."""
    if exc is None:
        return "ok"
    if isinstance(exc, GatewayError):
        return exc.code
    if isinstance(exc, Exception):
        return "internal_error"
    deadline = call_deadline.get()
    if deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.001:
        return UpstreamTimeout.code
    return "cancelled"


class upstream_attempt:
    """Around one provider call attempt: a log line, metrics and a client span.

    A plain (synchronous) context manager: nothing in it awaits, and an @asynccontextmanager
    costs a generator and two awaits on every provider call.
    """

    __slots__ = ("_attempt", "_cache", "_number", "_provider", "_span", "_started", "_token")

    def __init__(self, provider: str, number: int, cache: CacheState) -> None:
        self._provider = provider
        self._number = number
        self._cache = cache

    def __enter__(self) -> None:
        self._attempt = _Attempt()
        self._token = _attempt.set(self._attempt)
        self._started = time.perf_counter()
        self._span = tracing.client_span(
            f"{self._provider} fetch_balance",
            {"points.provider": self._provider, "points.attempt": self._number},
        )
        self._span.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            _attempt.reset(self._token)
            self._record(error)
        finally:
            self._span.__exit__(kind, error, traceback)

    def _record(self, error: BaseException | None) -> None:
        provider = self._provider
        duration = time.perf_counter() - self._started
        outcome = _outcome(error)
        status = self._attempt.upstream_status
        if isinstance(error, GatewayError) and error.upstream_status is not None:
            status = error.upstream_status
        tracing.finish_span(
            self._span,
            {"points.outcome": outcome, "http.response.status_code": status},
            error=None if error is None else outcome,
        )
        upstream_log.log(
            logging.INFO if outcome in _QUIET_OUTCOMES else logging.WARNING,
            "upstream_call",
            provider=provider,
            attempt=self._number,
            outcome=outcome,
            upstream_status=status,
            duration_ms=round(duration * 1000, 3),
            cache=self._cache,
        )
        metrics = current_metrics()
        if metrics is not None:
            metrics.child(metrics.upstream_calls, provider, outcome).inc()
            metrics.child(metrics.upstream_duration, provider).observe(duration)


def upstream_skipped(provider: str, reason: str) -> None:
    """No call was made: `circuit_open` or `bulkhead_full`."""
    upstream_log.log(logging.INFO, "upstream_skipped", provider=provider, reason=reason)
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.upstream_skipped, provider, reason).inc()


def cache_served(provider: str, *, stale: bool, age: float) -> None:
    """A balance was answered from the cache (fresh, or stale because the provider failed)."""
    # A fresh hit is the normal fast path (counted in the metrics; logged at DEBUG so a cached
    # answer costs one log line, the request's); a stale answer means a provider is failing.
    cache_log.log(
        logging.WARNING if stale else logging.DEBUG,
        "balance_from_cache",
        provider=provider,
        cache="stale" if stale else "hit",
        age_s=round(age, 3),
    )
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.cache_stale if stale else metrics.cache_hits, provider).inc()


def cache_missed(provider: str) -> None:
    """The cache had no fresh balance (or the caller asked for a fresh one)."""
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.cache_misses, provider).inc()


def breaker_changed(provider: str, old: str, new: str) -> None:
    """A circuit breaker changed state."""
    breaker_log.log(
        logging.WARNING if new == "open" else logging.INFO,
        "circuit_breaker",
        provider=provider,
        previous=old,
        state=new,
    )
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.breaker_transitions, provider, new).inc()
        metrics.set_breaker_state(provider, new)


def token_refreshed(
    provider: str, error: BaseException | None, upstream_status: int | None, duration: float
) -> None:
    """An iamport getToken call ended (`upstream_status`: the HTTP status, if one came)."""
    outcome = _outcome(error)
    upstream_log.log(
        logging.INFO if error is None else logging.WARNING,
        "iamport_get_token",
        provider=provider,
        outcome=outcome,
        upstream_status=upstream_status,
        duration_ms=round(duration * 1000, 3),
    )
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.token_refreshes, provider, outcome).inc()

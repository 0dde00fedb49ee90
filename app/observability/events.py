"""What the hot paths report: one call per event, loggers built once, metrics when an app serves.

The fetcher, the iamport token manager and the outbound exchange call these; each counts the event
in the metrics of the app serving the request (`current_metrics()`; none outside a request) and
may write a log line (structlog, so the request id bound by the middleware comes along). What a
request's providers did is also noted in the request's provider summary (`track_providers`), which
the middleware writes on the request's one INFO line: per-call lines are DEBUG unless something
went wrong or was retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypedDict

from app.errors import GatewayError, UpstreamTimeout
from app.observability import tracing
from app.observability.logging import HotLogger
from app.observability.metrics import current_metrics

upstream_log = HotLogger("points_gateway.upstream")
cache_log = HotLogger("points_gateway.cache")
breaker_log = HotLogger("points_gateway.breaker")

# A provider refusing the user's request is an answer, not trouble: quiet like success.
_QUIET_OUTCOMES = frozenset({"ok", "provider_rejected"})
CacheState = Literal["miss", "refresh", "none"]
"""Why a provider is called: nothing fresh cached, the caller asked `no-cache`, or one-shot."""
Source = Literal["upstream", "coalesced", "cache", "stale", "none"]
"""Where a request's answer for a provider came from (`none`: nowhere, no call was made)."""


class ProviderSummary(TypedDict):
    """One provider's part in one request, as the request's log line shows it."""

    outcome: str
    source: Source
    attempts: int
    upstream_ms: float


Providers = dict[str, ProviderSummary]
"""A request's provider summary: each provider it asked, by name."""

# The summary of the request being served: the middleware binds one dict per request before the
# app runs, so the tasks the aggregator fans out to (which copy the context) all fill the same
# object. None outside a request (start-up, background work): nothing is noted then.
_providers: ContextVar[Providers | None] = ContextVar("points_request_providers", default=None)


def track_providers() -> tuple[Providers, Token[Providers | None]]:
    """Start noting what providers do for the current request; reset the token when it ends."""
    providers: Providers = {}
    return providers, _providers.set(providers)


def stop_tracking_providers(token: Token[Providers | None]) -> None:
    """Undo `track_providers`."""
    _providers.reset(token)


def _note(provider: str, outcome: str, source: Source) -> None:
    providers = _providers.get()
    if providers is not None:
        providers[provider] = {
            "outcome": outcome,
            "source": source,
            "attempts": 0,
            "upstream_ms": 0.0,
        }


def _note_attempt(provider: str, number: int, outcome: str, milliseconds: float) -> None:
    """The last attempt's outcome, how many attempts, and the time spent in all of them."""
    providers = _providers.get()
    if providers is None:
        return
    noted = providers.get(provider) if number > 1 else None
    if noted is None:
        providers[provider] = {
            "outcome": outcome,
            "source": "upstream",
            "attempts": number,
            "upstream_ms": round(milliseconds, 3),
        }
    else:
        noted["outcome"] = outcome
        noted["attempts"] = number
        noted["upstream_ms"] = round(noted["upstream_ms"] + milliseconds, 3)


def provider_answered(provider: str, outcome: str, source: Source) -> None:
    """Note `provider`'s outcome for this request unless an attempt, a skip or the cache did.

    For answers none of those saw: another request's call shared by single-flight (`coalesced`),
    an account that is not linked or a failure before any call (`none`).
    """
    providers = _providers.get()
    if providers is not None and provider not in providers:
        _note(provider, outcome, source)


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
        number = self._number
        milliseconds = duration * 1000
        _note_attempt(provider, number, outcome, milliseconds)
        # The request's line carries a first attempt that went well; a failure, or the success
        # that a retry needed, gets its own line.
        if outcome not in _QUIET_OUTCOMES:
            level = logging.WARNING
        else:
            level = logging.INFO if number > 1 else logging.DEBUG
        if upstream_log.enabled_for(level):
            upstream_log.log(
                level,
                "upstream_call",
                provider=provider,
                attempt=number,
                outcome=outcome,
                upstream_status=status,
                duration_ms=round(milliseconds, 3),
                cache=self._cache,
            )
        metrics = current_metrics()
        if metrics is not None:
            metrics.child(metrics.upstream_calls, provider, outcome).inc()
            metrics.child(metrics.upstream_duration, provider).observe(duration)


def upstream_skipped(provider: str, reason: str) -> None:
    """No call was made: `circuit_open` or `bulkhead_full`."""
    _note(provider, reason, "none")
    upstream_log.log(logging.INFO, "upstream_skipped", provider=provider, reason=reason)
    metrics = current_metrics()
    if metrics is not None:
        metrics.child(metrics.upstream_skipped, provider, reason).inc()


def cache_served(provider: str, *, stale: bool, age: float) -> None:
    """A balance was answered from the cache (fresh, or stale because the provider failed)."""
    if stale:
        providers = _providers.get()
        noted = providers.get(provider) if providers is not None else None
        if noted is not None:
            # The failed attempts stay counted in `attempts` and `upstream_ms`.
            noted["outcome"] = "ok"
            noted["source"] = "stale"
        else:
            _note(provider, "ok", "stale")
    else:
        _note(provider, "ok", "cache")
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

"""Prometheus metrics: one CollectorRegistry per app (never the global one), served on /metrics."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from app import __version__

# No `*_created` series: they double the scrape for a timestamp nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Every metric of one gateway app, in the app's own registry."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Gauge(
            "points_gateway_info", "The gateway's version.", ["version"], registry=registry
        ).labels(__version__).set(1)
        http = ["method", "route", "status"]
        self.http_requests = Counter(
            "points_http_requests",
            "HTTP requests answered, by route template, method and status.",
            http,
            registry=registry,
        )
        self.http_duration = Histogram(
            "points_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            http,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_in_flight = Gauge(
            "points_http_requests_in_flight", "HTTP requests being answered.", registry=registry
        )
        self.upstream_calls = Counter(
            "points_upstream_calls",
            "Calls to a provider (each attempt), by outcome: ok or the problem code.",
            ["provider", "outcome"],
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "points_upstream_call_duration_seconds",
            "Time of one call to a provider (each attempt).",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_skipped = Counter(
            "points_upstream_skipped",
            "Provider calls not made: circuit open or bulkhead full.",
            ["provider", "reason"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "points_cache_hits",
            "Balances answered fresh from the cache.",
            ["provider"],
            registry=registry,
        )
        self.cache_misses = Counter(
            "points_cache_misses",
            "Balances the cache could not answer fresh (absent, expired or skipped by no-cache).",
            ["provider"],
            registry=registry,
        )
        self.cache_stale = Counter(
            "points_cache_stale_served",
            "Stale balances served because the provider failed (stale-if-error).",
            ["provider"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "points_circuit_breaker_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "points_circuit_breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            ["provider", "state"],
            registry=registry,
        )
        self.account_change_lag = Histogram(
            "points_account_change_lag_seconds",
            "From a linked account's change (any replica or process) to this process dropping "
            "its cached copy: how long an unlink elsewhere can still be answered here.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.token_refreshes = Counter(
            "points_iamport_token_refreshes",
            "iamport getToken calls, by outcome: ok or the problem code.",
            ["provider", "outcome"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "points_rate_limit_rejections",
            "Requests refused with 429 rate_limited.",
            registry=registry,
        )
        self.load_shed = Counter(
            "points_load_shed_rejections",
            "Requests refused with 503 overloaded by load shedding.",
            registry=registry,
        )

    def child(self, metric: _Metric, *values: str) -> _Metric:
        """`metric.labels(*values)`, kept: labels() validates and locks on every call.

        Every label value comes from a bounded set (methods, route templates, statuses,
        providers, outcome codes), so this holds as many children as the registry does.
        """
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[return-value]

    def set_breaker_state(self, provider: str, state: str) -> None:
        """Show one provider's breaker state."""
        self.child(self.breaker_state, provider).set(BREAKER_STATE_VALUES.get(state, 0))


# The metrics of the app serving the current request: set by the request middleware, read by
# code deep in the call (fetcher, token manager) without passing it through every layer.
_current: ContextVar[GatewayMetrics | None] = ContextVar("points_metrics", default=None)


def current_metrics() -> GatewayMetrics | None:
    """The metrics of the app serving this request, if any."""
    return _current.get()


def use_metrics(metrics: GatewayMetrics | None) -> Token[GatewayMetrics | None]:
    """Make `metrics` current for this task (and the tasks it starts)."""
    return _current.set(metrics)


def stop_using_metrics(token: Token[GatewayMetrics | None]) -> None:
    """Undo `use_metrics`."""
    _current.reset(token)

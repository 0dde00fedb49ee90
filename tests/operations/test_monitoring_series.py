"""Every series the Grafana dashboard and the alert rules read is one the gateway serves.

A real app's /metrics is scraped after traffic that makes every labelled series appear (a fresh
balance, a cached one, a failure answered from the cache that opens the breaker, a call the open
breaker refuses, a readiness check); then each PromQL expression of deploy/grafana and
deploy/prometheus/alerts.yaml is read for its series names and label names.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from tests.conftest import (
    BENEPIA_URL,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    make_settings,
    serve_in_process,
    token_ok,
)
from tests.operations.conftest import Samples, scrape
from tests.support.monitoring import (
    TARGET_LABELS,
    Query,
    Selector,
    alert_queries,
    dashboard_queries,
    grouping_labels,
    selectors,
)

# Gateway series the dashboard leaves out, and why.
NOT_GRAPHED = {
    # The breakers' state panel shows every change of state.
    "points_circuit_breaker_transitions_total",
}


@pytest.fixture
async def samples(gateway_app: AppFactory, upstream: respx.MockRouter) -> Samples:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    benepia = upstream.post(BENEPIA_URL)
    benepia.mock(return_value=benepia_ok())
    settings = make_settings(
        cache={"ttl": 60, "stale_if_error": 600},
        resilience={
            "retry_attempts": 1,
            "breaker_consecutive_failures": 1,
            "breaker_min_calls": 1_000_000,
            "breaker_open_seconds": 60,
        },
    )
    fresh = {"cache-control": "no-cache"}
    async with serve_in_process(gateway_app(settings)) as client:
        fetched = await client.get("/users/alice/points/benepia")
        cached = await client.get("/users/alice/points/benepia")
        benepia.mock(return_value=httpx.Response(500))
        stale = await client.get("/users/alice/points/benepia", headers=fresh)
        refused = await client.get("/users/alice/points/benepia", headers=fresh)
        ready = await client.get("/readyz")
        scraped = await scrape(client)
    assert [r.status_code for r in (fetched, cached, stale, refused, ready)] == [200] * 5
    assert cached.json()["cached"] is True
    assert stale.json()["stale"] is True
    return scraped


def series_labels(samples: Samples) -> dict[str, set[str]]:
    """Each sample name of the scrape, with every label name it carries."""
    labels: dict[str, set[str]] = {}
    for name, pairs in samples:
        labels.setdefault(name, set()).update(label for label, _ in pairs)
    return labels


def queries() -> list[Query]:
    found = dashboard_queries() + alert_queries()
    assert len(found) > 20
    return found


def test_every_series_read_is_served_with_the_labels_matched(samples: Samples) -> None:
    served = series_labels(samples)
    missing, unknown_labels = [], []
    for query in queries():
        found = selectors(query.expr)
        assert found, f"{query.where} reads no series"
        for selector in found:
            if selector.name not in served:
                missing.append(f"{query.where}: {selector.name}")
                continue
            extra = selector.labels - served[selector.name] - TARGET_LABELS
            if extra:
                unknown_labels.append(f"{query.where}: {selector.name} has no {sorted(extra)}")
    assert missing == [], "series /metrics does not serve:\n" + "\n".join(missing)
    assert unknown_labels == [], "\n".join(unknown_labels)


def test_every_grouping_label_is_one_of_the_series_read(samples: Samples) -> None:
    served = series_labels(samples)
    wrong = []
    for query in queries():
        available = set(TARGET_LABELS)
        for selector in selectors(query.expr):
            available |= served.get(selector.name, set())
        if unknown := grouping_labels(query.expr) - available:
            wrong.append(f"{query.where}: {sorted(unknown)}")
    assert wrong == [], "grouping by labels no series read has:\n" + "\n".join(wrong)


def test_the_dashboard_shows_every_gateway_series(samples: Samples) -> None:
    graphed = {s.name for q in dashboard_queries() for s in selectors(q.expr)}
    families = {
        name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for name, _ in samples
        if name.startswith("points_")
    }
    bases = {name.removesuffix("_bucket") for name in graphed}
    assert families - bases - NOT_GRAPHED == set()
    assert families >= NOT_GRAPHED, "NOT_GRAPHED names a series the gateway no longer serves"


def test_the_reader_finds_series_and_skips_promql_words() -> None:
    expr = (
        'sum by (job, provider) (rate(points_upstream_calls_total{outcome!~"ok|x", job=~".*"}[5m]))'
        " / ignoring (outcome) group_left sum without (le) (points_cache_hits_total offset 5m)"
        ' > 0.1 and on (job) absent(up{job="a"}) unless max(rate(x:y:rate5m[1m])) > bool 1e3'
    )
    assert selectors(expr) == [
        Selector("points_upstream_calls_total", frozenset({"outcome", "job"})),
        Selector("points_cache_hits_total", frozenset()),
        Selector("up", frozenset({"job"})),
        Selector("x:y:rate5m", frozenset()),
    ]
    assert grouping_labels(expr) == {"job", "provider", "outcome", "le"}
    with pytest.raises(ValueError, match="without a metric name"):
        selectors('sum(rate({__name__="points_cache_hits_total"}[5m]))')

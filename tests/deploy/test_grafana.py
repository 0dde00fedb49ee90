"""deploy/grafana/points-gateway.json: a dashboard model Grafana imports as it is (every query on
the `${datasource}` variable, panels laid on the grid without overlap), whose queries are valid
PromQL (`promtool check rules` parses each as a recording rule) and cover what operators watch.

That every series it reads exists is tests/operations/test_monitoring_series.py's part.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring import dashboard, dashboard_queries, panels, selectors

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
PROMTOOL_TIMEOUT = 60.0
# What the issue asks the dashboard to show, by the series each needs.
SHOWN = {
    "request rate": "points_http_requests_total",
    "latency percentiles": "points_http_request_duration_seconds_bucket",
    "per-provider upstream latency": "points_upstream_call_duration_seconds_bucket",
    "upstream outcomes": "points_upstream_calls_total",
    "breaker state": "points_circuit_breaker_state",
    "cache hits": "points_cache_hits_total",
    "cache misses": "points_cache_misses_total",
    "token refreshes": "points_iamport_token_refreshes_total",
    "shedding": "points_load_shed_rejections_total",
}


def graphs() -> list[dict[str, Any]]:
    return [panel for panel in panels() if panel["type"] != "row"]


def test_the_datasource_is_a_prometheus_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["datasource"] == DATASOURCE, name
        assert variables[name]["includeAll"] is True, name
    for panel in graphs():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_query_filters_on_the_job_and_instance_variables() -> None:
    for panel in graphs():
        for target in panel["targets"]:
            for selector in re.findall(r"\w+\{[^}]*\}", target["expr"]):
                assert 'job=~"$job"' in selector, f"{panel['title']}: {selector}"
                assert 'instance=~"$instance"' in selector, f"{panel['title']}: {selector}"


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    everything = panels()
    ids = [panel["id"] for panel in everything]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for row in range(grid["y"], grid["y"] + grid["h"]):
            for column in range(grid["x"], grid["x"] + grid["w"]):
                taken = cells.setdefault((row, column), panel["title"])
                assert taken == panel["title"], f"{panel['title']} overlaps {taken}"


def test_every_panel_says_what_it_shows() -> None:
    model = dashboard()
    assert model["uid"] == "points-gateway"
    assert isinstance(model["schemaVersion"], int)
    titles = [panel["title"] for panel in graphs()]
    assert len(titles) == len(set(titles))
    for panel in graphs():
        assert panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_the_dashboard_shows_what_operators_watch() -> None:
    read = {s.name for query in dashboard_queries() for s in selectors(query.expr)}
    assert {what: name for what, name in SHOWN.items() if name not in read} == {}
    exprs = " ".join(query.expr for query in dashboard_queries())
    for quantile in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le)" in exprs, quantile
    assert "histogram_quantile(0.99, sum by (provider, le)" in exprs
    assert "sum by (status)" in exprs, "an error ratio by status"


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{number}", "expr": query.expr}
        for number, query in enumerate(queries)
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    try:
        done = subprocess.run(
            [promtool, "check", "rules", str(rule_file)],
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"promtool check rules took over {PROMTOOL_TIMEOUT} s")
    where = "\n".join(f"query_{n}: {q.where}" for n, q in enumerate(queries))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{where}"
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout

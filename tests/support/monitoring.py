"""The PromQL of the shipped Grafana dashboard and alert rules, and the series it reads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "points-gateway.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "6h",
    "$job": ".*",
    "$instance": ".*",
}
# Labels Prometheus adds to every series of a target (deploy/prometheus/scrape.yaml).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<matchers>\{(?:[^{}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})
    |(?P<range>\[[^\]]*\])
    |(?P<number>\.?\d[\w.]*)
    |(?P<name>[A-Za-z_:][\w:]*)
    |(?P<open>\()
    |(?P<close>\))
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_MATCHER = re.compile(
    r"""([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)
# Words that are PromQL, not series; the first ones take a parenthesised list of label names.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _LABEL_LISTS | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Query:
    """One PromQL expression as Prometheus receives it, and where it comes from."""

    where: str
    expr: str


@dataclass(frozen=True)
class Selector:
    """A series name an expression reads, with the label names its matchers use."""

    name: str
    labels: frozenset[str]


def selectors(expr: str) -> list[Selector]:
    """Every series name `expr` reads (functions, keywords, label lists and numbers skipped)."""
    tokens = [
        (m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"
    ]
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        index += 1
        if kind == "matchers":
            raise ValueError(f"a selector without a metric name: {text} in {expr!r}")
        if kind != "name":
            continue
        if text.lower() in _LABEL_LISTS and following[0] == "open":
            while index < len(tokens) and tokens[index][0] != "close":
                index += 1
            continue
        if following[0] == "open" or text.lower() in _KEYWORDS:
            continue  # a function, an aggregation or an operator
        if following[0] == "name" and following[1].lower() in ("by", "without"):
            continue  # an aggregation written `sum by (...) (...)`
        labels = frozenset(_MATCHER.findall(following[1])) if following[0] == "matchers" else None
        if labels is not None:
            index += 1
        found.append(Selector(text, labels or frozenset()))
    return found


def grouping_labels(expr: str) -> set[str]:
    """The label names of every `by`, `without`, `on`, `ignoring` and `group_*` list."""
    tokens = [
        (m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"
    ]
    found: set[str] = set()
    for index, (kind, text) in enumerate(tokens[:-1]):
        if kind == "name" and text.lower() in _LABEL_LISTS and tokens[index + 1][0] == "open":
            for inner_kind, inner in tokens[index + 2 :]:
                if inner_kind == "close":
                    break
                if inner_kind == "name":
                    found.add(inner)
    return found


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def dashboard() -> dict[str, Any]:
    """deploy/grafana/points-gateway.json."""
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return cast(dict[str, Any], loaded)


def panels(model: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel of the dashboard, the panels of collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in (model or dashboard())["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[Query]:
    """Every panel target's expression and every variable's query, as PromQL."""
    queries = [
        Query(f"panel {panel['title']!r} ({target['refId']})", grafana_to_promql(target["expr"]))
        for panel in panels()
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        assert match, f"variable {variable['name']}: only label_values(selector, label) is read"
        queries.append(Query(f"variable ${variable['name']}", grafana_to_promql(match["selector"])))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    """The rules of deploy/prometheus/alerts.yaml, every group's."""
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    """Every rule's expression."""
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]

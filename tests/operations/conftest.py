"""Operations fixtures: captured JSON log lines and parsed /metrics scrapes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability.logging import QUIET_LOGGERS, formatter


@dataclass
class CapturedLogs:
    """What the gateway's JSON handler wrote while a test ran."""

    stream: io.StringIO = field(default_factory=io.StringIO)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, parsed (each must be one JSON object)."""
        parsed = []
        for line in self.text.splitlines():
            value = json.loads(line)
            assert isinstance(value, dict), line
            parsed.append(value)
        return parsed

    def clear(self) -> None:
        """Forget what was written so far."""
        self.stream.seek(0)
        self.stream.truncate()

    def events(self, event: str) -> list[dict[str, Any]]:
        """The lines of one event (`request`, `upstream_call`, ...)."""
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def json_logs() -> Iterator[CapturedLogs]:
    """A handler with the production JSON formatter on the root logger, at INFO, for one test."""
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)  # as configure_logging does (the test client too)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """A Prometheus text scrape as {(sample name, labels): value}."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the scrape does not have it."""
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    """GET /metrics (must answer 200 in the Prometheus text format) and parse it."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)

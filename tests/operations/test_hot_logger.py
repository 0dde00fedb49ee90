"""HotLogger: its direct path writes exactly the line the structlog/stdlib path writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from app.observability.logging import (
    HotLogger,
    LogFormat,
    bind_request_id,
    configure_logging,
    get_logger,
    unbind,
)

NAME = "points_gateway.upstream"
FIELDS: dict[str, Any] = {
    "provider": "gafapay",
    "attempt": 1,
    "outcome": "ok",
    "upstream_status": 200,
    "duration_ms": 1.5,
    "cache": "miss",
    # Values from outside go through the same redaction on both paths.
    "detail": "token=abc123secret and a\nforged line",
    "api_key": "pk_live_0123456789",
}


@pytest.fixture
def sole_handler() -> Iterator[io.StringIO]:
    """The gateway's handler as the root's only one (as in production), for one test."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    for handler in saved_handlers:
        root.removeHandler(handler)
    configure_logging("json", "info", stream=stream, force=True)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _without_time(line: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(line.pop("timestamp"), str)
    return line


def test_the_direct_line_is_the_structlog_line(sole_handler: io.StringIO) -> None:
    tokens = bind_request_id("3e98dded-ef01-441d-a241-57a8384b7627")
    try:
        HotLogger(NAME).log(logging.WARNING, "upstream_call", **FIELDS)
        get_logger(NAME).log(logging.WARNING, "upstream_call", **FIELDS)
    finally:
        unbind(tokens)
    direct, full = _lines(sole_handler)
    assert _without_time(direct) == _without_time(full)
    assert list(direct)[:2] == ["level", "event"]  # timestamp (removed above) came first
    assert direct["request_id"] == "3e98dded-ef01-441d-a241-57a8384b7627"
    assert direct["level"] == "warning"
    assert direct["api_key"] == "[REDACTED]"
    assert "abc123secret" not in sole_handler.getvalue()
    assert sole_handler.getvalue().count("\n") == 2, "no forged line"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_the_direct_path_renders_each_format(sole_handler: io.StringIO, fmt: LogFormat) -> None:
    configure_logging(fmt, "info", stream=sole_handler, force=True)
    HotLogger(NAME).log(logging.INFO, "request", route="/x", status=200)
    text = sole_handler.getvalue()
    assert text.count("\n") == 1
    assert "request" in text
    assert "/x" in text


def test_below_the_level_nothing_is_written(sole_handler: io.StringIO) -> None:
    HotLogger(NAME).log(logging.DEBUG, "balance_from_cache", provider="gafapay")
    assert sole_handler.getvalue() == ""
    assert not HotLogger(NAME).enabled_for(logging.DEBUG)
    assert HotLogger(NAME).enabled_for(logging.INFO)


def test_another_handler_gets_the_record_through_the_stdlib(
    sole_handler: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        HotLogger(NAME).log(logging.INFO, "upstream_call", **FIELDS)
    (record,) = [r for r in caplog.records if r.name == NAME]
    assert record.levelno == logging.INFO
    (line,) = _lines(sole_handler)  # and the gateway's handler still wrote its line
    assert line["event"] == "upstream_call"


def test_a_filter_on_the_way_sends_the_record_through_the_stdlib(
    sole_handler: io.StringIO,
) -> None:
    seen: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record)
        return False  # and drop it

    logger = logging.getLogger(NAME)
    logger.addFilter(keep)
    try:
        HotLogger(NAME).log(logging.INFO, "upstream_call", **FIELDS)
    finally:
        logger.removeFilter(keep)
    assert len(seen) == 1
    assert sole_handler.getvalue() == ""

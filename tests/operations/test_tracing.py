"""Tracing is an optional extra: off unless OTEL_* asks, and off without the SDK (warned)."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import respx

from app.observability import tracing
from tests.conftest import GAFAPAY_URL, AppFactory, gafapay_ok, serve_in_process

SDK_INSTALLED = importlib.util.find_spec("opentelemetry.sdk") is not None


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing as in a fresh process (no OTEL_* variable), restored after the test."""
    for name in (
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(tracing, "_state", None)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "points"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_only_the_standard_variables_turn_tracing_on(env: dict[str, str], wanted: bool) -> None:
    assert tracing.requested(env) is wanted


@pytest.mark.usefixtures("unconfigured")
def test_without_otel_variables_tracing_is_off_and_spans_are_no_ops() -> None:
    assert tracing.configure_tracing() is False
    assert not tracing.enabled()
    with tracing.request_span("GET", []) as span:
        assert span is None
    with tracing.client_span("gafapay fetch_balance", {"points.attempt": 1}) as span:
        assert span is None


@pytest.mark.skipif(SDK_INSTALLED, reason="the otel extra is installed here")
@pytest.mark.usefixtures("unconfigured")
async def test_without_the_extra_tracing_stays_off_even_when_asked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    gateway_app: AppFactory,
    upstream: respx.MockRouter,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    caplog.set_level(logging.WARNING, logger="points_gateway.tracing")
    upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())

    async with serve_in_process(gateway_app()) as client:  # create_app configures tracing
        response = await client.get("/users/alice/points/gafapay")

    assert response.status_code == 200, response.text
    assert not tracing.enabled()
    assert any("otel extra is not installed" in r.getMessage() for r in caplog.records)

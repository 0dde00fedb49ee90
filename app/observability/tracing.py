"""OpenTelemetry tracing: an optional extra (`pip install 'points-gateway[otel]'`), off by default.

Tracing turns on only when the standard variables ask for it (`OTEL_TRACES_EXPORTER`, or an OTLP
endpoint in `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; never with
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`) and the SDK is installed. Then the
gateway has a span per request (server) and per provider call attempt (client), children of an
incoming `traceparent`. The provider is the gateway's own, not the global one, so nothing else in
the process (FastAPI's built-in telemetry included) starts emitting spans behind its back.

Nothing here imports OpenTelemetry at module level: without the extra the gateway runs as before
and every span helper is a no-op costing one `is None` check.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from app import __version__

log = logging.getLogger("points_gateway.tracing")

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_NO_SPAN: AbstractContextManager[None] = nullcontext()


class _Tracing:
    """What a configured process holds (all OpenTelemetry objects, typed loosely on purpose)."""

    def __init__(self, tracer: Any, provider: Any, api: Any, propagate: Any) -> None:
        self.tracer = tracer
        self.provider = provider
        self.server = api.SpanKind.SERVER
        self.client = api.SpanKind.CLIENT
        self.error = api.StatusCode.ERROR
        self.status = api.Status
        self.extract = propagate.extract


_state: _Tracing | None = None
_configured = False


def requested(env: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(exporters) or any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def enabled() -> bool:
    """Whether this process records spans."""
    return _state is not None


def configure_tracing(env: Mapping[str, str] | None = None) -> bool:
    """Set tracing up once per process, as the environment says; True when it is on."""
    global _state, _configured
    if _configured:
        return _state is not None
    _configured = True
    env = os.environ if env is None else env
    if not requested(env):
        return False
    try:
        api = importlib.import_module("opentelemetry.trace")
        propagate = importlib.import_module("opentelemetry.propagate")
        sdk = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces, but the otel extra is not installed "
            "(pip install 'points-gateway[otel]'); tracing stays off"
        )
        return False
    service = env.get("OTEL_SERVICE_NAME") or "points-gateway"
    provider = sdk.TracerProvider(
        resource=resources.Resource.create(
            {"service.name": service, "service.version": __version__}
        )
    )
    exporters = 0
    for exporter in _exporters(env, export):
        provider.add_span_processor(export.BatchSpanProcessor(exporter))
        exporters += 1
    if not exporters:
        provider.shutdown()
        return False
    _state = _Tracing(provider.get_tracer("points_gateway", __version__), provider, api, propagate)
    log.info("tracing on: %d exporter(s), service %s", exporters, service)
    return True


def _exporters(env: Mapping[str, str], export: Any) -> Iterable[Any]:
    names = [n.strip() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")]
    for name in filter(None, names):
        if name == "console":
            yield export.ConsoleSpanExporter()
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            module = (
                "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
                if protocol == "grpc"
                else "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            )
            try:
                # The exporter reads its endpoint, headers and timeout from OTEL_* itself.
                yield importlib.import_module(module).OTLPSpanExporter()
            except ImportError:
                log.warning("OTLP %s exporter not installed; no traces exported there", protocol)
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; ignored", name)


def shutdown_tracing() -> None:
    """Flush and stop (the SDK also does this at exit); tracing is off afterwards."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.provider.shutdown()


def request_span(
    method: str, headers: Iterable[tuple[bytes, bytes]]
) -> AbstractContextManager[Any]:
    """A server span for one request (a child of the caller's `traceparent`), or a no-op."""
    state = _state
    if state is None:
        return _NO_SPAN
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    return state.tracer.start_as_current_span(  # type: ignore[no-any-return]
        method, context=state.extract(carrier), kind=state.server
    )


def client_span(name: str, attributes: Mapping[str, str | int]) -> AbstractContextManager[Any]:
    """A client span around one provider call, or a no-op."""
    state = _state
    if state is None:
        return _NO_SPAN
    return state.tracer.start_as_current_span(  # type: ignore[no-any-return]
        name, kind=state.client, attributes=dict(attributes)
    )


def finish_span(
    span: Any, attributes: Mapping[str, str | int | float | None], *, error: str | None
) -> None:
    """Record the outcome on `span` (None when tracing is off)."""
    state = _state
    if span is None or state is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.set_status(state.status(state.error, error))

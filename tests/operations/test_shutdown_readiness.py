"""Readiness fails first on shutdown: at the stop signal (serve), else at the lifespan shutdown."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import uvicorn

from app.observability.shutdown import GracefulServer, ShutdownState
from tests.conftest import AppFactory, make_settings, serve_in_process


async def test_readyz_fails_with_a_shutdown_check_once_shutdown_begins(
    gateway_app: AppFactory,
) -> None:
    app = gateway_app()
    async with serve_in_process(app) as client:
        before = await client.get("/readyz")
        state = app.state.shutdown
        assert isinstance(state, ShutdownState)
        state.begin()
        during = await client.get("/readyz")
        alive = await client.get("/healthz")
        providers = await client.get("/providers")

    assert before.status_code == 200
    assert before.json() == {"status": "ready", "checks": {"store": "ok", "cache": "ok"}}
    assert during.status_code == 503
    assert during.json() == {
        "status": "not_ready",
        "checks": {"store": "ok", "cache": "ok", "shutdown": "failed"},
    }
    # Only readiness changes: requests still in flight (or arriving late) are answered.
    assert alive.status_code == 200
    assert providers.status_code == 200


async def test_the_lifespan_shutdown_marks_the_instance_as_shutting_down(
    gateway_app: AppFactory,
) -> None:
    app = gateway_app()
    async with serve_in_process(app):
        assert not app.state.shutdown.started
    assert app.state.shutdown.started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_stop_signal_fails_readiness_before_uvicorn_shuts_down(
    gateway_app: AppFactory, sig: signal.Signals
) -> None:
    app = gateway_app()
    config = uvicorn.Config(app, timeout_graceful_shutdown=7, log_config=None)
    server = GracefulServer(config, app.state.shutdown)

    server.handle_exit(sig, None)

    assert app.state.shutdown.started
    assert server.should_exit
    assert server.config.timeout_graceful_shutdown == 7


def test_shutdown_grace_is_a_setting_with_a_20_second_default() -> None:
    assert make_settings().shutdown_grace == 20
    assert make_settings(shutdown_grace="5").shutdown_grace == 5
    with pytest.raises(ValueError, match="shutdown_grace"):
        make_settings(shutdown_grace=0)


def _draining_server(gateway_app: AppFactory, drain: float) -> tuple[GracefulServer, ShutdownState]:
    app = gateway_app()
    state = app.state.shutdown
    server = GracefulServer(uvicorn.Config(app, log_config=None), state, drain=drain)
    server.started = True  # as after uvicorn's startup: the listener is open
    return server, state


def test_the_first_signal_fails_readiness_and_keeps_serving_until_the_drain_ends(
    gateway_app: AppFactory,
) -> None:
    server, state = _draining_server(gateway_app, drain=0.05)

    server.handle_exit(signal.SIGTERM, None)
    assert state.started
    assert not server.should_exit
    assert not asyncio.run(server.on_tick(1))
    time.sleep(0.1)

    assert asyncio.run(server.on_tick(2))
    assert server.should_exit
    assert not server.force_exit


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_ends_the_drain_and_a_third_sigint_forces_the_exit(
    gateway_app: AppFactory, second: signal.Signals
) -> None:
    server, _ = _draining_server(gateway_app, drain=3600)

    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(second, None)

    assert server.should_exit
    assert not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_no_drain_before_the_listener_opens_or_when_it_is_zero(gateway_app: AppFactory) -> None:
    starting, _ = _draining_server(gateway_app, drain=3600)
    starting.started = False
    off, _ = _draining_server(gateway_app, drain=0)

    starting.handle_exit(signal.SIGTERM, None)
    off.handle_exit(signal.SIGTERM, None)

    assert starting.should_exit
    assert off.should_exit


def test_shutdown_drain_is_a_setting_with_a_5_second_default() -> None:
    assert make_settings().shutdown_drain == 5
    assert make_settings(shutdown_drain="0").shutdown_drain == 0
    assert make_settings(shutdown_drain="2.5").shutdown_drain == 2.5
    with pytest.raises(ValueError, match="shutdown_drain"):
        make_settings(shutdown_drain=-1)

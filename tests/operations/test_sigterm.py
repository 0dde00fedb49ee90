"""SIGTERM on a real `points-gateway serve`: the request in flight still gets its 200, then exit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.sandbox.demo import DEMO_ACCOUNTS
from tests.support.processes import (
    KEY,
    Sandboxes,
    db_upgrade,
    gateway_env,
    running_sandboxes,
    serve_process,
    stop,
)

pytestmark = pytest.mark.integration

GRACE = 8
LATENCY = 1.5
ONE = "/users/{user_id}/points/gafapay"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    with running_sandboxes() as running:
        yield running


def test_sigterm_lets_the_request_in_flight_finish_then_exits_within_the_grace(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    env = {**gateway_env(sandboxes.urls, tmp_path, KEY), "POINTS_SHUTDOWN_GRACE": str(GRACE)}
    db_upgrade(env, tmp_path)
    sandboxes.gafapay.reset()

    with serve_process(env, tmp_path, "graceful") as served:
        with httpx.Client(base_url=served.base_url, timeout=10.0) as client:
            linked = client.put(
                "/users/alice/accounts/gafapay", json=DEMO_ACCOUNTS["alice"]["gafapay"]
            )
            assert linked.status_code == 201, linked.text
        fault = httpx.post(
            f"{sandboxes.urls.gafapay_url}/__sandbox/faults",
            json={"key": "*", "latency": LATENCY, "times": 1},
        )
        assert fault.status_code == 200, fault.text

        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                httpx.get,
                f"{served.base_url}/users/alice/points/gafapay",
                headers={"x-request-id": "in-flight-1"},
                timeout=10.0,
            )
            deadline = time.monotonic() + 5
            while sandboxes.gafapay.points_calls < 1:  # the gateway is now waiting on GafaPay
                assert time.monotonic() < deadline, "the request never reached GafaPay"
                time.sleep(0.01)
            signalled = time.monotonic()
            stop(served, within=GRACE)
            exited_after = time.monotonic() - signalled
            response = in_flight.result(timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["points"] == "250.0"
    assert response.json()["cached"] is False
    assert exited_after < GRACE
    # The process stayed for the request (GafaPay's latency), not a fixed sleep.
    assert exited_after > 0.5

    lines = served.log_lines()  # every line of the process is JSON, uvicorn's included
    (request,) = [
        line for line in lines if line["event"] == "request" and line["request_id"] == "in-flight-1"
    ]
    assert (request["route"], request["status"]) == (ONE, 200)
    assert request["duration_ms"] >= LATENCY * 1000 * 0.9
    events = [line["event"] for line in lines]
    assert "Application shutdown complete." in events
    assert events.index("Application shutdown complete.") > lines.index(request)

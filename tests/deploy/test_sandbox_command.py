"""`points-gateway sandbox` (the compose `sandbox` service): both emulators, seeded like the
demo, stopped cleanly by SIGINT or SIGTERM; a busy port is one line on stderr."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from app.sandbox.demo import DEMO_IMP_KEY, DEMO_IMP_SECRET
from app.sandbox.serve import sandbox_gateway_env
from tests.deploy.support import (
    HOST,
    base_env,
    console_script,
    free_ports,
    run,
    started,
    stop,
    wait_for,
    wait_until_ok,
)

pytestmark = pytest.mark.integration


def sandbox_argv(iamport_port: int, gafapay_port: int) -> list[str]:
    return [
        console_script("points-gateway"),
        "sandbox",
        "--iamport-port",
        str(iamport_port),
        "--gafapay-port",
        str(gafapay_port),
    ]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sandbox_serves_both_emulators_and_stops_on_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    iamport_port, gafapay_port = free_ports(2)
    iamport, gafapay = f"http://{HOST}:{iamport_port}", f"http://{HOST}:{gafapay_port}"
    with started(sandbox_argv(iamport_port, gafapay_port), base_env(), tmp_path, "sandbox") as proc:
        wait_until_ok(proc, [f"{iamport}/__sandbox/stats", f"{gafapay}/__sandbox/stats"])

        with httpx.Client(timeout=5.0) as client:
            token = client.post(
                f"{iamport}/users/getToken",
                json={"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET},
            )
            refused = client.post(
                f"{iamport}/users/getToken", json={"imp_key": DEMO_IMP_KEY, "imp_secret": "wrong"}
            )
            gafapay_stats = client.get(f"{gafapay}/__sandbox/stats").json()

        assert token.status_code == 200, token.text
        assert token.json()["code"] == 0
        assert token.json()["response"]["access_token"]
        assert refused.status_code == 401
        assert "GET /gafapay/v3/reward_promotion/user_points" in gafapay_stats["calls"]

        def banner_printed() -> bool:
            return "Ctrl-C stops the sandbox." in proc.stdout.read_text()

        wait_for(banner_printed, "the sandbox printed no banner")
        printed = proc.stdout.read_text()
        for name, value in sandbox_gateway_env(iamport, gafapay).items():
            assert f"  {name}={value}\n" in printed

        assert stop(proc, stop_signal) == 0, proc.output()
    assert "Traceback" not in proc.stderr.read_text()


def test_sandbox_on_a_busy_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    # The second port is the busy one: the first, already bound, is released on the way out.
    (free,) = free_ports(1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        done = run(sandbox_argv(free, port), base_env(), tmp_path)

    assert done.returncode == 2, done.stderr
    assert f"cannot listen on {HOST}:{port}" in done.stderr
    assert "Traceback" not in done.stderr

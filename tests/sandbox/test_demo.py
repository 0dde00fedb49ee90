"""The real console script: `points-gateway demo` serves, answers and stops; `serve` fails fast."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from app.sandbox.demo import DEMO_ACCOUNTS
from tests.support.demo import Demo, demo_command, printed_tokens
from tests.support.processes import (
    EXIT_TIMEOUT,
    RUN_TIMEOUT,
    clean_env,
    command,
    free_ports,
    wait_healthy,
)
from tests.support.raw_http import connect, read_until_closed

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


def run_to_exit(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """Run `args` until it exits (failing the test after RUN_TIMEOUT s), capturing its text."""
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=cwd,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not exit within {RUN_TIMEOUT} s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_serves_the_demo_users_and_stops_on_signal(
    demo: Demo,
    tmp_path: Path,
    stop_signal: signal.Signals,
) -> None:
    proc, base, stdout = demo.proc, demo.base, demo.stdout
    wait_healthy(proc, base, tmp_path / "stderr.txt")
    tokens = printed_tokens(stdout)

    with httpx.Client(base_url=base, timeout=10.0) as client:

        def as_user(user: str, path: str | None = None) -> httpx.Response:
            headers = {"authorization": f"Bearer {tokens[user]}"}
            return client.get(path or f"/users/{user}/points", headers=headers)

        alice = as_user("alice")
        carol = as_user("carol")
        nobody = as_user("nobody")
        anonymous = client.get("/users/alice/points")
        alice_on_bob = as_user("alice", "/users/bob/points")

    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["code"] == "unauthorized"
    assert alice_on_bob.status_code == 403, alice_on_bob.text
    assert alice_on_bob.json()["code"] == "forbidden"

    assert alice.status_code == 200, alice.text
    assert alice.json()["complete"] is True
    assert {b["provider"]: b["points"] for b in alice.json()["balances"]} == {
        "benepia": "12000",
        "gafapay": "250.0",
        "smile_io": "300",  # a provider from a definition (app/definitions/shipped/smile_io.yaml)
    }
    assert carol.status_code == 200, carol.text
    assert carol.json()["complete"] is False
    codes = {b["provider"]: (b["error"] or {}).get("code") for b in carol.json()["balances"]}
    assert codes == {"benepia": "provider_rejected", "gafapay": None}
    assert nobody.status_code == 200, nobody.text
    assert nobody.json()["balances"] == []

    # Its gateway stops reading headers at the cap, before they are complete (issue 13).
    with connect(base) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: demo\r\nX-Pad: " + b"a" * 65536)
        refused, closed = read_until_closed(sock, within=EXIT_TIMEOUT)
    assert closed
    assert refused.startswith(b"HTTP/1.1 431 "), refused[:100]

    proc.send_signal(stop_signal)
    try:
        code = proc.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"demo did not exit within {EXIT_TIMEOUT} s of {stop_signal.name}")
    assert code == 0
    printed = stdout.read_text()
    assert f"{base}/users/alice/points" in printed
    assert f"{base}/users/nobody/points" in printed
    assert "Authorization: Bearer $DEMO_TOKEN_ALICE" in printed


def test_a_gafapay_id_alone_reads_no_ones_balance_on_the_demo(demo: Demo, tmp_path: Path) -> None:
    """Issue 13's attack, against the served demo: bob's GafaPay id with alice's token."""
    proc, base, stdout, gafapay = demo.proc, demo.base, demo.stdout, demo.gafapay
    wait_healthy(proc, base, tmp_path / "stderr.txt")
    alice = {"authorization": f"Bearer {printed_tokens(stdout)['alice']}"}
    bob_ids = DEMO_ACCOUNTS["bob"]["gafapay"]
    alice_ids = DEMO_ACCOUNTS["alice"]["gafapay"]
    with httpx.Client(base_url=base, timeout=10.0) as client:
        read = client.post("/users/alice/points/gafapay", json=bob_ids, headers=alice)
        linked = client.put("/users/alice/accounts/gafapay", json=bob_ids, headers=alice)
        # Alice's own session token, as GafaPay (here its emulator) issues it at login.
        minted = client.post(
            f"{gafapay}/__sandbox/customer_tokens", json={"user_id": alice_ids["gafapay_user_id"]}
        )
        token = minted.json()["token"]
        own = client.post(
            "/users/alice/points/gafapay", json={**alice_ids, "token": token}, headers=alice
        )
        borrowed = client.post(
            "/users/alice/points/gafapay", json={**bob_ids, "token": token}, headers=alice
        )
        relinked = client.put(
            "/users/alice/accounts/gafapay", json={**alice_ids, "token": token}, headers=alice
        )
        merged = client.get("/users/alice/points", headers=alice)

    for refused in (read, linked):
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "ownership_proof_required"
        assert "1234.56" not in refused.text
    assert own.status_code == 200, own.text
    assert own.json()["points"] == "250.0"
    assert borrowed.status_code == 422, borrowed.text
    assert borrowed.json()["errors"][0]["loc"] == ["body", "token"]
    assert relinked.status_code == 200, relinked.text
    assert {b["provider"]: b["points"] for b in merged.json()["balances"]} == {
        "benepia": "12000",
        "gafapay": "250.0",
        "smile_io": "300",
    }


def test_serve_without_credentials_exits_2_naming_the_setting(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    done = run_to_exit(
        [*command(), "serve", "--port", str(port)], tmp_path, "serve without credentials"
    )

    assert done.returncode == 2, done.stderr
    assert "POINTS_PROVIDERS__BENEPIA__IMP_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_on_a_busy_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    iamport_port, gafapay_port, smile_port = free_ports(3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        done = run_to_exit(
            demo_command(port, iamport_port, gafapay_port, smile_port),
            tmp_path,
            "demo on a busy port",
        )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert str(port) in done.stderr


def test_the_defined_provider_has_its_emulator_and_fault_knobs(demo: Demo, tmp_path: Path) -> None:
    """Smile.io, served from its definition, fails alone when its emulator is told to."""
    wait_healthy(demo.proc, demo.base, tmp_path / "stderr.txt")
    alice = {"authorization": f"Bearer {printed_tokens(demo.stdout)['alice']}"}
    with httpx.Client(base_url=demo.base, timeout=10.0) as client:
        # Nothing of alice's is cached yet, so no stale balance stands in for the failure.
        knob = client.post(f"{demo.smile}/__sandbox/faults", json={"key": "*", "status": 500})
        failing = client.get("/users/alice/points", headers=alice)
        client.delete(f"{demo.smile}/__sandbox/faults")
        fine = client.get("/users/alice/points/smile_io", headers=alice)
        listed = client.get("/providers")
    assert fine.status_code == 200, fine.text
    assert (fine.json()["points"], fine.json()["unit"]) == ("300", "smile_io_point")
    assert knob.status_code == 200, knob.text
    entries = {b["provider"]: b for b in failing.json()["balances"]}
    assert failing.json()["complete"] is False
    assert entries["smile_io"]["error"]["code"] == "upstream_error"
    assert entries["benepia"]["status"] == entries["gafapay"]["status"] == "ok"
    assert [p["name"] for p in listed.json()["providers"]] == ["benepia", "gafapay", "smile_io"]

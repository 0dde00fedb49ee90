"""The real process keeps linked accounts across a restart, and refuses keys that cannot open them.

The emulators run in a background thread (tests/integration/conftest.py's `serving`); the gateway
is `points-gateway serve` as a subprocess over a SQLite file, configured only by environment.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from app.accounts.sealing import Keyring
from app.sandbox.demo import (
    ALICE_GAFAPAY,
    DEMO_ACCOUNTS,
    DEMO_CURRENCY,
    demo_sandboxes,
)
from app.sandbox.gafapay import create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, bind
from tests.support.processes import (
    EXIT_TIMEOUT,
    KEY,
    REFUSE_TIMEOUT,
    Emulators,
    command,
    db_upgrade,
    free_ports,
    gateway_env,
    run,
    wait_healthy,
)
from tests.support.servers import HOST, serving

pytestmark = pytest.mark.integration

OTHER_KEY = Keyring.generate_entry("other-key")
DAVE_GAFAPAY = "da7e"
ALICE = DEMO_ACCOUNTS["alice"]


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    """Both emulators with the demo accounts (and dave's GafaPay account), in a thread."""
    iamport, gafapay = demo_sandboxes()
    gafapay.add_account(DAVE_GAFAPAY, DEMO_CURRENCY, Decimal("7"))
    iamport_app = Served(create_iamport_app(iamport), bind(HOST, 0))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(HOST, 0))
    with serving([iamport_app, gafapay_app]):
        yield Emulators(iamport_app.url, gafapay_app.url)


@contextmanager
def gateway(env: dict[str, str], cwd: Path, name: str) -> Iterator[tuple[httpx.Client, Path]]:
    """`points-gateway serve` on a free port, healthy; SIGTERM'd (graceful exit) at the end."""
    (port,) = free_ports(1)
    stderr = cwd / f"{name}.stderr.txt"
    with (cwd / f"{name}.stdout.txt").open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*command(), "serve", "--port", str(port)], stdout=out, stderr=err, env=env, cwd=cwd
        )
    try:
        base = f"http://{HOST}:{port}"
        wait_healthy(proc, base, stderr)
        with httpx.Client(base_url=base, timeout=10.0) as client:
            yield client, stderr
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not exit within {EXIT_TIMEOUT} s of SIGTERM")
        # uvicorn shuts down gracefully, then re-raises the signal it caught: 0 or -SIGTERM.
        assert code in (0, -signal.SIGTERM), stderr.read_text()
        assert "Application shutdown complete" in stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_TIMEOUT)


def serve_once(env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`points-gateway serve` expected to exit on its own: its output and how long it took."""
    (port,) = free_ports(1)
    started = time.monotonic()
    done = run(["serve", "--port", str(port)], env, cwd)
    return done, time.monotonic() - started


def balances(client: httpx.Client, user: str) -> dict[str, str]:
    r = client.get(f"/users/{user}/points")
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True, r.text
    return {b["provider"]: b["points"] for b in r.json()["balances"]}


def accounts(client: httpx.Client, user: str) -> list[tuple[str, str, str]]:
    r = client.get(f"/users/{user}/accounts")
    assert r.status_code == 200, r.text
    return [(a["provider"], a["masked_id"], a["linked_at"]) for a in r.json()["accounts"]]


def test_linked_accounts_survive_a_restart(emulators: Emulators, tmp_path: Path) -> None:
    env = gateway_env(emulators, tmp_path, KEY)
    db_upgrade(env, tmp_path)

    with gateway(env, tmp_path, "first") as (client, _):
        for provider, fields in ALICE.items():
            r = client.put(f"/users/alice/accounts/{provider}", json=fields)
            assert r.status_code == 201, r.text
        dave = client.put(
            "/users/dave/accounts/gafapay?verify=true",
            json={"gafapay_user_id": DAVE_GAFAPAY, "currency_id": DEMO_CURRENCY},
        )
        assert dave.status_code == 201, dave.text
        before = balances(client, "alice")
        linked_before = accounts(client, "alice")

    assert before == {"benepia": "12000", "gafapay": "250.0"}
    assert [p for p, _, _ in linked_before] == ["benepia", "gafapay"]
    assert ALICE_GAFAPAY not in repr(linked_before)

    with gateway(env, tmp_path, "second") as (client, _):
        assert balances(client, "alice") == before
        assert accounts(client, "alice") == linked_before
        assert balances(client, "dave") == {"gafapay": "7"}

    # Again, but POINTS_SECRET_KEYS holds only a key that did not seal these rows.
    refused, elapsed = serve_once({**env, "POINTS_SECRET_KEYS": OTHER_KEY}, tmp_path)

    assert refused.returncode != 0, refused.stderr
    assert elapsed < REFUSE_TIMEOUT
    assert "restart-key" in refused.stderr
    assert "POINTS_SECRET_KEYS" in refused.stderr
    for material in (KEY.partition(":")[2], OTHER_KEY.partition(":")[2]):
        assert material not in refused.stderr + refused.stdout


def test_restart_with_only_another_key_prints_no_traceback(
    emulators: Emulators, tmp_path: Path
) -> None:
    env = gateway_env(emulators, tmp_path, KEY)
    db_upgrade(env, tmp_path)
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text(json.dumps({"alice": ALICE}), encoding="utf-8")
    imported = run(["accounts", "import", str(accounts_file)], env, tmp_path)
    assert imported.returncode == 0, imported.stderr

    done, _ = serve_once({**env, "POINTS_SECRET_KEYS": OTHER_KEY}, tmp_path)

    assert "restart-key" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2
    assert "points-gateway: configuration error:" in done.stderr

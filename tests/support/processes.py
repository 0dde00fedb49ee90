"""Real `points-gateway serve` processes over emulators served in a background thread."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.accounts.sealing import Keyring
from app.sandbox.demo import (
    DEMO_GAFAPAY_COMPANY,
    DEMO_GAFAPAY_TOKEN,
    DEMO_IMP_KEY,
    DEMO_IMP_SECRET,
    demo_sandboxes,
)
from app.sandbox.gafapay import GafapaySandbox, create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, bind
from tests.support.servers import HOST, serving

START_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0
RUN_TIMEOUT = 15
# How long a CLI command may take to refuse to start.
REFUSE_TIMEOUT = 8.0


def command() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sysconfig.get_path("scripts")) / "points-gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def clean_env() -> dict[str, str]:
    """The parent's environment without any POINTS_* setting."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("POINTS_")}


def free_ports(count: int) -> list[int]:
    """Distinct ports free right now (held together while picked, then released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=base, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode}: {log.read_text()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"demo did not answer /healthz within {START_TIMEOUT} s")


KEY = Keyring.generate_entry("restart-key")


@dataclass(frozen=True, slots=True)
class Emulators:
    iamport_url: str
    gafapay_url: str


def gateway_env(emulators: Emulators, data: Path, keys: str) -> dict[str, str]:
    """The parent's environment without POINTS_*, plus exactly the gateway's configuration."""
    return {
        **clean_env(),
        "POINTS_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'gw.db'}",
        "POINTS_SECRET_KEYS": keys,
        "POINTS_SANDBOX": "true",
        "POINTS_AUTH__MODE": "disabled",
        "POINTS_PROVIDERS__BENEPIA__BASE_URL": emulators.iamport_url,
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": DEMO_IMP_KEY,
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": DEMO_IMP_SECRET,
        "POINTS_PROVIDERS__BENEPIA__CHANNEL_KEY": "channel-key-demo-kcp",
        "POINTS_PROVIDERS__GAFAPAY__BASE_URL": emulators.gafapay_url,
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": DEMO_GAFAPAY_COMPANY,
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": DEMO_GAFAPAY_TOKEN,
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a CLI command to its exit (bounded), capturing its text."""
    try:
        return subprocess.run(
            [*command(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=REFUSE_TIMEOUT + 5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"points-gateway {' '.join(args)} did not exit in time")


def db_upgrade(env: dict[str, str], cwd: Path) -> None:
    done = run(["db", "upgrade"], env, cwd)
    assert done.returncode == 0, done.stderr


@dataclass(frozen=True, slots=True)
class Sandboxes:
    """Both emulators, running: their URLs and the GafaPay emulator's state (call counts)."""

    urls: Emulators
    gafapay: GafapaySandbox


@contextmanager
def running_sandboxes() -> Iterator[Sandboxes]:
    """The demo's emulators on free loopback ports, in a background thread."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = Served(create_iamport_app(iamport), bind(HOST, 0))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(HOST, 0))
    with serving([iamport_app, gafapay_app]):
        yield Sandboxes(Emulators(iamport_app.url, gafapay_app.url), gafapay)


@dataclass(frozen=True, slots=True)
class ServeProcess:
    """One `points-gateway serve` subprocess."""

    proc: subprocess.Popen[bytes]
    base_url: str
    stderr: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """Its stderr, where every line must be one JSON object (POINTS_LOG_FORMAT's default)."""
        lines = []
        for line in self.stderr.read_text().splitlines():
            value = json.loads(line)
            assert isinstance(value, dict), line
            lines.append(value)
        return lines


@contextmanager
def serve_process(
    env: dict[str, str], cwd: Path, name: str, *, args: Sequence[str] = ()
) -> Iterator[ServeProcess]:
    """`points-gateway serve [args]` on a free loopback port, healthy; killed if running after."""
    (port,) = free_ports(1)
    stderr = cwd / f"{name}.stderr.txt"
    with (cwd / f"{name}.stdout.txt").open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*command(), "serve", "--host", HOST, "--port", str(port), *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
        )
    try:
        base = f"http://{HOST}:{port}"
        wait_healthy(proc, base, stderr)
        yield ServeProcess(proc, base, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_TIMEOUT)


def stop(served: ServeProcess, *, within: float = EXIT_TIMEOUT) -> int:
    """SIGTERM, then the exit code (0, or -SIGTERM: uvicorn re-raises the signal it caught)."""
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = served.proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within {within} s of SIGTERM")
    assert code in (0, -signal.SIGTERM), served.stderr.read_text()
    return code

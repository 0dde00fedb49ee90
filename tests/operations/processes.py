"""Real `points-gateway serve` processes over emulators served in a background thread."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.sandbox.demo import demo_sandboxes
from app.sandbox.gafapay import GafapaySandbox, create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, bind
from tests.integration.conftest import HOST, serving
from tests.integration.test_demo_cli import EXIT_TIMEOUT, command, free_ports, wait_healthy
from tests.integration.test_restart import Emulators


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

"""`points-gateway demo` as a user runs it: the real console script on free ports."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import EXIT_TIMEOUT, START_TIMEOUT, clean_env, command, free_ports

HOST = "127.0.0.1"


def demo_command(port: int, iamport_port: int, gafapay_port: int, smile_port: int) -> list[str]:
    """`points-gateway demo` serving on `port`, its emulators on the other three."""
    return [
        *command(),
        "demo",
        "--port",
        str(port),
        "--iamport-port",
        str(iamport_port),
        "--gafapay-port",
        str(gafapay_port),
        "--smile-port",
        str(smile_port),
    ]


@dataclass(frozen=True)
class Demo:
    """The demo process, its base URL, its stdout file and its emulators' URLs."""

    proc: subprocess.Popen[bytes]
    base: str
    stdout: Path
    gafapay: str
    smile: str
    iamport: str


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`points-gateway demo` on free ports; always killed at the end."""
    port, iamport_port, gafapay_port, smile_port = free_ports(4)
    stdout = tmp_path / "stdout.txt"
    with stdout.open("wb") as out, (tmp_path / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(
            demo_command(port, iamport_port, gafapay_port, smile_port),
            stdout=out,
            stderr=err,
            env=clean_env(),
            cwd=tmp_path,
        )
    try:
        urls = [f"http://{HOST}:{p}" for p in (port, gafapay_port, smile_port, iamport_port)]
        yield Demo(proc, urls[0], stdout, *urls[1:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_TIMEOUT)


def printed_tokens(stdout: Path) -> dict[str, str]:
    """The DEMO_TOKEN_<USER>=... lines the demo printed (waited for, bounded)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = dict(re.findall(r"^DEMO_TOKEN_([A-Z]+)=(\S+)$", stdout.read_text(), re.MULTILINE))
        if len(found) == 4:
            return {user.lower(): token for user, token in found.items()}
        time.sleep(0.1)
    pytest.fail("the demo printed no DEMO_TOKEN_* lines")

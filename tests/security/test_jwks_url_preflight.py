"""POINTS_AUTH__JWKS_URL is checked before serving: a plain-http or malformed URL is exit 2.

Keys fetched over plain http could be swapped by anyone on the path, and every token signed
with the swapped key would pass. Like a provider URL, the JWKS URL must be https unless the
sandbox is on, and `serve` says so in one line instead of failing in uvicorn's lifespan.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.accounts.memory_store import MemoryAccountStore
from app.accounts.sealing import Keyring
from app.errors import ConfigurationError
from app.gateway import plan_gateway
from tests.conftest import make_settings
from tests.support.processes import RUN_TIMEOUT, clean_env, command, free_ports

pytestmark = pytest.mark.integration

PLAIN_HTTP = "http://idp.example/.well-known/jwks.json"


def serve_env(data: Path, jwks_url: str) -> dict[str, str]:
    return {
        **clean_env(),
        "POINTS_DATA_DIR": str(data),
        "POINTS_SECRET_KEYS": Keyring.generate_entry("jwks-key"),
        "POINTS_AUTH__JWKS_URL": jwks_url,
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": "imp-key",
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": "imp-secret-of-the-jwks-test",
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": "abc123",
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": "gafapay-token-of-the-jwks-test",
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [*command(), *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`points-gateway {' '.join(args)}` kept running: it served")


def test_serve_with_a_plain_http_jwks_url_exits_2_with_one_line(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "data", PLAIN_HTTP)
    upgraded = run(["db", "upgrade"], env, tmp_path)  # everything else is ready to serve
    assert upgraded.returncode == 0, upgraded.stderr
    (port,) = free_ports(1)

    done = run(["serve", "--port", str(port)], env, tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "POINTS_AUTH__JWKS_URL" in line]
    assert line.startswith("points-gateway: configuration error: POINTS_AUTH__JWKS_URL")
    assert "https" in line
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    "url",
    [PLAIN_HTTP, "idp.example/jwks.json", "ftp://idp.example/jwks", "https://", "http://[::1"],
)
def test_a_jwks_url_that_is_not_https_is_refused_without_echoing_it(url: str) -> None:
    settings = make_settings(auth={"mode": "required", "jwks_url": url})
    with pytest.raises(ConfigurationError, match="POINTS_AUTH__JWKS_URL") as refused:
        plan_gateway(settings)
    assert url not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "sandbox"),
    [("https://idp.example/.well-known/jwks.json", False), (PLAIN_HTTP, True)],
)
def test_https_or_the_sandbox_passes(url: str, sandbox: bool) -> None:
    settings = make_settings(auth={"mode": "required", "jwks_url": url}, sandbox=sandbox)
    plan = plan_gateway(settings, store=MemoryAccountStore())
    assert plan.settings.auth.jwks_url == url

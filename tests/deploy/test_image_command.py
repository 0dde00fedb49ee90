"""What the image would run, run here: no Docker engine, so the compose services' commands and
the Dockerfile's CMD and HEALTHCHECK are parsed and executed directly, with the environment the
compose file gives them, adapted to this machine (SQLite in a temporary directory instead of the
`postgres` service, no `redis` service, emulators and gateway on free loopback ports).

The compose `sandbox` service and the gateway's POINTS_* variables (filled with the values
`points-gateway sandbox` prints) together answer a real balance query.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import jwt
import pytest

from app.sandbox.demo import DEMO_ACCOUNTS
from app.sandbox.serve import sandbox_gateway_env
from tests.deploy.support import (
    DOCKERFILE,
    EVERY_INTERFACE,
    HOST,
    Stage,
    base_env,
    dummy_secrets,
    env_instructions,
    exec_form,
    free_ports,
    healthcheck_command,
    local_argv,
    parse_dockerfile,
    replace_option,
    run,
    service_command,
    service_env,
    started,
    stop,
    wait_until_ok,
)

pytestmark = pytest.mark.integration

IMAGE_PORT = "8000"


def runtime() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1]


def image_env(service_values: dict[str, str]) -> dict[str, str]:
    """This machine's environment, the image's ENV (its PATH is this venv) and the service's."""
    image = {k: v for k, v in env_instructions(runtime()).items() if k != "PATH"}
    return {**base_env(), **image, **service_values}


def adapted(env: dict[str, str], database: Path) -> dict[str, str]:
    """A compose service's environment with the compose network's hosts replaced."""
    out = dict(env)
    assert out["POINTS_DATABASE_URL"].startswith("postgresql+asyncpg://points:")
    assert out["POINTS_DATABASE_URL"].endswith("@postgres:5432/points")
    out["POINTS_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    if "POINTS_REDIS_URL" in out:
        assert out.pop("POINTS_REDIS_URL").startswith("redis://redis:")
    return out


def healthcheck_argv(port: int) -> list[str]:
    _, command = healthcheck_command(runtime().last("HEALTHCHECK").value)
    image_url = f"http://127.0.0.1:{IMAGE_PORT}/healthz"
    assert image_url in command[-1]
    local = command[-1].replace(image_url, f"http://{HOST}:{port}/healthz")
    return local_argv([*command[:-1], local])


def test_the_images_commands_serve_a_balance_with_the_compose_environment(
    tmp_path: Path,
) -> None:
    iamport_port, gafapay_port, port = free_ports(3)
    database = tmp_path / "points.db"
    base = f"http://{HOST}:{port}"

    sandbox_argv = service_command("sandbox")
    sandbox_argv = replace_option(sandbox_argv, "--host", EVERY_INTERFACE, HOST)
    sandbox_argv = replace_option(sandbox_argv, "--iamport-port", "8001", str(iamport_port))
    sandbox_argv = replace_option(sandbox_argv, "--gafapay-port", "8002", str(gafapay_port))
    iamport, gafapay = f"http://{HOST}:{iamport_port}", f"http://{HOST}:{gafapay_port}"

    jwt_secret = dummy_secrets()["POINTS_AUTH__JWT_SECRET"]
    given = {**dummy_secrets(), **sandbox_gateway_env(iamport, gafapay)}

    with started(local_argv(sandbox_argv), image_env({}), tmp_path, "sandbox") as sandbox:
        # The one-shot `migrate` service first, as compose orders it.
        migrate_env = image_env(adapted(service_env("migrate", given), database))
        migrated = run(local_argv(service_command("migrate")), migrate_env, tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert "created the account schema" in migrated.stdout

        cmd = exec_form(runtime().last("CMD").value)
        cmd = replace_option(cmd, "--host", EVERY_INTERFACE, HOST)
        cmd = replace_option(cmd, "--port", IMAGE_PORT, str(port))
        gateway_env = image_env(adapted(service_env("gateway", given), database))
        wait_until_ok(sandbox, [f"{iamport}/__sandbox/stats", f"{gafapay}/__sandbox/stats"])

        with started(local_argv(cmd), gateway_env, tmp_path, "gateway") as gateway:
            wait_until_ok(gateway, [f"{base}/healthz"])

            health = run(healthcheck_argv(port), image_env({}), tmp_path)
            assert health.returncode == 0, health.stderr

            now = int(time.time())
            token = jwt.encode({"sub": "alice", "iat": now, "exp": now + 300}, jwt_secret)
            auth = {"authorization": f"Bearer {token}"}
            # Alice proves her GafaPay account with her own session token, issued by the emulator.
            alice = DEMO_ACCOUNTS["alice"]
            minted = httpx.post(
                f"{gafapay}/__sandbox/customer_tokens",
                json={"user_id": alice["gafapay"]["gafapay_user_id"]},
                timeout=10.0,
            )
            accounts = {**alice, "gafapay": {**alice["gafapay"], "token": minted.json()["token"]}}
            with httpx.Client(base_url=base, timeout=10.0) as client:
                ready = client.get("/readyz")
                anonymous = client.get("/users/alice/points")
                linked = [
                    client.put(f"/users/alice/accounts/{provider}", json=fields, headers=auth)
                    for provider, fields in accounts.items()
                ]
                points = client.get("/users/alice/points", headers=auth)

            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["store"] == "ok"
            assert anonymous.status_code == 401, "auth is on in the compose configuration"
            assert [r.status_code for r in linked] == [201, 201], [r.text for r in linked]
            assert points.status_code == 200, points.text
            assert points.json()["complete"] is True
            balances = {b["provider"]: b["points"] for b in points.json()["balances"]}
            assert balances == {"benepia": "12000", "gafapay": "250.0"}

            # `docker stop` sends SIGTERM: the gateway finishes in time (uvicorn shuts down
            # gracefully, then re-raises the signal it caught, so -SIGTERM is a clean exit too).
            code = stop(gateway, signal.SIGTERM)
            assert code in (0, -signal.SIGTERM), gateway.output()

        unhealthy = run(healthcheck_argv(port), image_env({}), tmp_path)
        assert unhealthy.returncode != 0, "the HEALTHCHECK fails when nothing answers"

        assert stop(sandbox, signal.SIGTERM) == 0, sandbox.output()

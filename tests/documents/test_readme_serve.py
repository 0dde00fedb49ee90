"""The README's first `serve` environment serves, as written, against the emulators."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import clean_env, db_upgrade, running_sandboxes, serve_process

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("**A first `serve`, against the emulators.**")
    found = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert found is not None
    return found[1]


def environment(block: str, cwd: Path) -> dict[str, str]:
    """What the block's `export` lines set, run by bash as a reader's shell would."""
    exports = "\n".join(
        line for line in re.split(r"(?<!\\)\n", block) if line.startswith("export ")
    )
    done = subprocess.run(
        ["bash", "-c", f"{exports}\nenv -0"],
        capture_output=True,
        env={**clean_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        cwd=cwd,
        timeout=30,
        check=True,
    )
    pairs = (item.split(b"=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode() for key, value in pairs}


def test_the_block_runs_the_commands_this_test_runs() -> None:
    block = readme_block()
    commands = [
        line.split("#")[0].strip()
        for line in block.splitlines()
        if line.startswith("points-gateway ")
    ]
    assert commands == [
        "points-gateway sandbox &",
        "points-gateway db upgrade",
        "points-gateway serve",
    ]


def test_the_minimal_environment_serves_a_linked_balance(tmp_path: Path) -> None:
    env = environment(readme_block(), tmp_path)
    assert env["POINTS_SECRET_KEYS"].count(":") == 1, "keys generate ran"
    with running_sandboxes() as sandboxes:
        env["POINTS_PROVIDERS__BENEPIA__BASE_URL"] = sandboxes.urls.iamport_url
        env["POINTS_PROVIDERS__GAFAPAY__BASE_URL"] = sandboxes.urls.gafapay_url
        db_upgrade(env, tmp_path)
        assert (tmp_path / "data" / "points-gateway.db").exists()
        with (
            serve_process(env, tmp_path, "readme") as served,
            httpx.Client(base_url=served.base_url, timeout=10.0) as client,
        ):
            linked = client.put(
                "/users/alice/accounts/benepia",
                json={"benepia_user": "alice.kim", "benepia_password": "alice-benepia-pw"},
            )
            assert linked.status_code == 201, linked.text
            points = client.get("/users/alice/points")
    assert points.status_code == 200, points.text
    assert points.json()["balances"][0]["points"] == "12000"

"""Clients generated from the committed OpenAPI document, used against real servers.

The document is read from `openapi/openapi.json` as committed at test time (never a copy), so a
change to it that breaks a generated client fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.sandbox.demo import demo_accounts, demo_sandboxes
from app.sandbox.gafapay import create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, bind
from tests.conftest import require_services
from tests.support.servers import HOST, gateway_settings, serving

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "openapi" / "openapi.json"

# The generated Python package's name (unique, so it never shadows anything importable).
CLIENT_PACKAGE = "points_gateway_generated_client"
GENERATE_TIMEOUT = 120.0

# Exact npm versions: openapi-typescript 7.13.0 declares the peer `typescript@^5.x`.
NPM_PACKAGES = {"openapi-typescript": "7.13.0", "typescript": "5.9.3"}
# @hey-api/openapi-ts 0.95.0 is the last release that runs on Node 20 (0.96 asks for Node 22);
# TypeScript 5, as TypeScript 7 crashes it. Its fetch client is generated into the output.
HEY_API_PACKAGES = {"@hey-api/openapi-ts": "0.95.0", "typescript": "5.9.3"}
HEY_API_CONFIG = """\
export default {{
  input: {openapi},
  output: {{ path: "gen", importFileExtension: ".js" }},
  plugins: ["@hey-api/client-fetch"],
}};
"""
NPM_INSTALL_TIMEOUT = 300.0
NPX_TIMEOUT = 120.0


def _unavailable(reason: str) -> NoReturn:
    """Fail under POINTS_REQUIRE_SERVICES=1 (CI), else skip."""
    if require_services():
        pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def run(
    args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool, bounded; its output is kept for the failure message."""
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args[0]} {args[1] if len(args) > 1 else ''} took over {timeout} s: {exc}")


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# --- the servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gateway_url() -> Iterator[str]:
    """Both emulators and a real gateway (auth disabled) over 127.0.0.1, with the demo accounts."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = Served(create_iamport_app(iamport), bind(HOST, 0))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(HOST, 0))
    settings = gateway_settings(iamport_app.url, gafapay_app.url)
    app = create_app(settings, store=MemoryAccountStore(demo_accounts()))
    gateway = Served(app, bind(HOST, 0))
    with serving([iamport_app, gafapay_app, gateway]):
        yield gateway.url


# --- the Python client ---------------------------------------------------------------------------


def _generator() -> list[str]:
    """openapi-python-client's CLI, from this interpreter's environment (the `test` extra)."""
    script = Path(sys.executable).parent / "openapi-python-client"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "openapi_python_client"]


@pytest.fixture(scope="session")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """A client generated from the committed document, once a session, imported from a tmp dir."""
    root = tmp_path_factory.mktemp("python-client")
    config = root / "config.json"
    # No post hooks: formatting the generated code is not what is tested, and needs no ruff.
    config.write_text(json.dumps({"post_hooks": []}))
    proc = run(
        [
            *_generator(),
            "generate",
            "--path",
            str(OPENAPI),
            "--output-path",
            str(root / CLIENT_PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        cwd=root,
        timeout=GENERATE_TIMEOUT,
    )
    assert proc.returncode == 0, output(proc)
    sys.path.insert(0, str(root))
    try:
        importlib.invalidate_caches()
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.partition(".")[0] == CLIENT_PACKAGE]:
            del sys.modules[name]


# --- the TypeScript toolchain --------------------------------------------------------------------


NPM_ENV = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false"}


def npm_project(
    root: Path, name: str, packages: dict[str, str], *, esm: bool = False, why: str
) -> None:
    """`root` as an npm project with `packages` installed at their pinned versions."""
    for tool in ("node", "npm", "npx"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not on PATH (needed for {why})")
    package: dict[str, object] = {
        "name": name,
        "version": "0.0.0",
        "private": True,
        "devDependencies": packages,
    }
    if esm:
        package["type"] = "module"
    (root / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    proc = run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact"],
        cwd=root,
        timeout=NPM_INSTALL_TIMEOUT,
        env=NPM_ENV,
    )
    assert proc.returncode == 0, output(proc)


@pytest.fixture(scope="session")
def ts_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp npm project with the pinned tools installed (once a session) and `schema.d.ts`."""
    root = tmp_path_factory.mktemp("ts-client")
    npm_project(
        root, "points-gateway-ts-client-check", NPM_PACKAGES, why="the TypeScript client types"
    )
    proc = run(
        ["npx", "--no-install", "openapi-typescript", str(OPENAPI), "-o", "schema.d.ts"],
        cwd=root,
        timeout=NPX_TIMEOUT,
        env=NPM_ENV,
    )
    assert proc.returncode == 0, output(proc)
    assert (root / "schema.d.ts").is_file(), output(proc)
    return root


@pytest.fixture(scope="session")
def hey_api_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp npm project with the pinned hey-api generator, and its client in `gen/` (ESM)."""
    root = tmp_path_factory.mktemp("hey-api-client")
    npm_project(
        root, "points-gateway-hey-api-check", HEY_API_PACKAGES, esm=True, why="the hey-api client"
    )
    config = HEY_API_CONFIG.format(openapi=json.dumps(str(OPENAPI)))
    (root / "openapi-ts.config.mjs").write_text(config)
    proc = run(
        ["npx", "--no-install", "openapi-ts", "-f", "openapi-ts.config.mjs", "--no-log-file"],
        cwd=root,
        timeout=NPX_TIMEOUT,
        env=NPM_ENV,
    )
    assert proc.returncode == 0, output(proc)
    assert (root / "gen" / "sdk.gen.ts").is_file(), output(proc)
    return root

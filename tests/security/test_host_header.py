"""No URL is ever built from the caller's Host header, on a real `points-gateway serve`.

Starlette's default answers `GET /users/alice/points/` with `307 Location: http://<Host>/...`
before any authentication: an open redirect for whoever controls the Host header a victim's
client sends (or a cache keyed without it). The served process answers 404 instead, and no
answer, whatever the route, carries the Host it was given.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from app.accounts.memory_store import MemoryAccountStore
from app.accounts.sealing import Keyring
from app.main import create_app
from app.openapi_doc import SERVERS
from app.route_walk import leaf_routes
from app.security.api_keys import hash_key
from tests.conftest import make_settings
from tests.support.processes import ServeProcess, clean_env, command, serve_process

pytestmark = pytest.mark.integration

EVIL = "evil.example"
KEY = "pgk-host-header-test-key-0123456789"
PARAMS = {"user_id": "alice", "provider": "benepia"}


def served_routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every route the gateway serves, documented or not."""
    app = create_app(make_settings(), store=MemoryAccountStore())
    found = set()
    for route in leaf_routes(app.routes):
        if isinstance(route, APIRoute | Route):
            path = route.path.format(**PARAMS)
            for method in route.methods or ():
                found.add((method, path))
    return sorted(found)


ROUTES = served_routes()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`serve` with authentication on (an API key) and a fresh SQLite store."""
    data = tmp_path_factory.mktemp("host-header")
    env = {
        **clean_env(),
        "POINTS_DATA_DIR": str(data / "data"),
        "POINTS_SECRET_KEYS": Keyring.generate_entry("host-key"),
        "POINTS_AUTH__API_KEYS": (
            f'[{{"name":"reader","sha256":"{hash_key(KEY)}","scopes":["points:read"]}}]'
        ),
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": "imp-key",
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": "imp-secret-of-the-host-test",
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": "abc123",
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": "gafapay-token-of-the-host-test",
    }
    upgrade = subprocess.run(
        [*command(), "db", "upgrade"], env=env, cwd=data, capture_output=True, timeout=30
    )
    assert upgrade.returncode == 0, upgrade.stderr
    with serve_process(env, data, "host-header") as served:
        yield served


def assert_no_host_in(response: httpx.Response) -> None:
    assert not response.is_redirect, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert EVIL not in response.text
    assert all(EVIL not in value for value in response.headers.values())


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}/" for m, p in ROUTES])
def test_a_trailing_slash_is_404_not_a_redirect_to_the_host(
    gateway: ServeProcess, method: str, path: str
) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10.0) as client:
        response = client.request(method, f"{path}/", headers={"host": EVIL})

    assert_no_host_in(response)
    assert response.status_code == 404, response.text
    if method != "HEAD":
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "not_found"


def test_the_reported_case_with_credentials_too(gateway: ServeProcess) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10.0) as client:
        anonymous = client.get("/users/alice/points/", headers={"host": EVIL})
        with_key = client.get("/users/alice/points/", headers={"host": EVIL, "x-api-key": KEY})

    for response in (anonymous, with_key):
        assert_no_host_in(response)
        assert response.status_code == 404


@pytest.mark.parametrize(
    "path", ["/openapi.json", "/docs", "/redoc", "/providers", "/nowhere", "/users/alice/points"]
)
def test_no_answer_carries_the_host(gateway: ServeProcess, path: str) -> None:
    # Documents (`servers`, the docs pages' links), problems (`instance`) and answers.
    with httpx.Client(base_url=gateway.base_url, timeout=10.0) as client:
        response = client.get(path, headers={"host": EVIL, "x-forwarded-host": EVIL})

    assert_no_host_in(response)
    assert response.status_code in (200, 401, 404), response.text
    if path == "/openapi.json":
        assert response.json()["servers"] == SERVERS, "fixed, never built from the Host"

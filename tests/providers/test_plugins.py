"""A third provider plugs in through the entry-point group, with no change to the gateway.

The plugin (`tests/providers/acme_points.py`) makes a real HTTP call through the seam, imports
nothing of the gateway but `app.providers`, and fits in 80 lines; here it is installed as a
distribution of its own and served through the unchanged API.
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx

from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.errors import ConfigurationError
from app.main import create_app
from app.providers.registry import ENTRY_POINT_GROUP, discover_plugins
from app.settings import Settings
from tests.conftest import make_store, serve_in_process

PLUGIN = Path(__file__).with_name("acme_points.py")
ACME = "https://api.acme.example"
API_KEY = "acme-sEcReT-api-key-0001"
PIN = "sEcReT-pin-4242"


@pytest.fixture
def acme_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install a tiny distribution `acme-points` that declares the entry point."""
    shutil.copy(PLUGIN, tmp_path / "acme_points.py")
    dist = tmp_path / "acme_points-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-points\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nacme = acme_points:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_points", raising=False)


def acme_answer(request: httpx.Request) -> httpx.Response:
    """ACME's balance endpoint, as its documentation shows it."""
    member = request.url.path.split("/")[3]
    if request.headers.get("x-api-key") != API_KEY:
        return httpx.Response(401, json={"status": "UNAUTHORIZED"})
    if member == "0000":
        return httpx.Response(404, json={"status": "MEMBER_NOT_FOUND", "message": "No member 0000"})
    if member == "4290":
        return httpx.Response(429, headers={"retry-after": "9"}, json={"status": "SLOW_DOWN"})
    if member == "5550":
        return httpx.Response(200, json={"status": "OK", "data": {"member_id": "9999"}})
    body = f'{{"status":"OK","data":{{"member_id":"{member}","points":1234.50}}}}'
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


@pytest.fixture
async def gateway(acme_installed: None) -> AsyncIterator[tuple[httpx.AsyncClient, respx.Route]]:
    settings = Settings.model_validate(
        {
            "enabled_providers": ["acme"],
            "providers": {"acme": {"api_key": API_KEY}},
            "auth": {"mode": "disabled"},
        }
    )
    accounts = {
        user: {"acme": {"member_id": member, "member_pin": PIN}}
        for user, member in (("dave", "1001"), ("eve", "0000"), ("fay", "4290"), ("gil", "5550"))
    }
    # Seeded accounts are validated against the plugin's own account schema.
    store = MemoryAccountStore(load_accounts(accounts, discover_plugins(), source="test"))
    router = respx.MockRouter(assert_all_mocked=True)
    route = router.get(url__startswith=f"{ACME}/v1/members/").mock(side_effect=acme_answer)
    app = create_app(settings, store=store, transport=httpx.MockTransport(router.async_handler))
    async with serve_in_process(app) as client:
        yield client, route


def test_the_plugin_uses_the_public_module_alone_in_80_lines() -> None:
    source = PLUGIN.read_text()
    assert len(source.splitlines()) <= 80
    gateway_imports = {
        node.names[0].name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    assert {name for name in gateway_imports if name and name.startswith("app")} == {
        "app.providers"
    }


@pytest.mark.usefixtures("acme_installed")
def test_entry_point_plugin_is_discovered() -> None:
    plugins = discover_plugins()
    assert {"benepia", "gafapay", "acme"} <= set(plugins)
    assert plugins["acme"].display_name == "ACME Rewards"


async def test_third_provider_is_served_through_the_unchanged_api(
    gateway: tuple[httpx.AsyncClient, respx.Route],
) -> None:
    client, route = gateway
    providers = (await client.get("/providers")).json()["providers"]
    closed = {"state": "closed", "consecutive_failures": 0, "retry_after": None}
    assert providers == [
        {"name": "acme", "display_name": "ACME Rewards", "unit": "acme_point", "circuit": closed}
    ]
    dave = (await client.get("/users/dave/points")).json()
    assert dave["balances"][0]["points"] == "1234.50"
    assert dave["balances"][0]["unit"] == "acme_point"
    sent = route.calls.last.request
    assert sent.url.path == "/v1/members/1001/balance"
    assert sent.headers["x-member-pin"] == PIN
    once = await client.post(
        "/users/zed/points/acme", json={"member_id": "2002", "member_pin": PIN}
    )
    assert once.status_code == 200, once.text
    assert once.json()["points"] == "1234.50"


@pytest.mark.parametrize(
    ("user", "status", "code"),
    [
        ("eve", 422, "provider_rejected"),
        ("fay", 503, "upstream_rate_limited"),
        ("gil", 502, "upstream_invalid_response"),
    ],
)
async def test_the_plugins_failures_map_like_the_built_in_ones(
    gateway: tuple[httpx.AsyncClient, respx.Route], user: str, status: int, code: str
) -> None:
    client, _ = gateway
    answer = await client.get(f"/users/{user}/points/acme")
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert answer.json()["provider"] == "acme"
    assert PIN not in answer.text
    assert API_KEY not in answer.text


async def test_the_plugins_account_is_documented_with_its_secret_write_only(
    gateway: tuple[httpx.AsyncClient, respx.Route],
) -> None:
    client, _ = gateway
    doc = (await client.get("/openapi.json")).json()
    assert "link_acme_account" in str(doc["paths"]["/users/{user_id}/accounts/acme"])
    assert doc["components"]["schemas"]["AcmeAccount"]["properties"]["member_pin"]["writeOnly"]


@pytest.mark.usefixtures("acme_installed")
def test_plugin_settings_are_validated_at_start() -> None:
    settings = Settings.model_validate(
        {
            "enabled_providers": ["acme"],
            "providers": {"acme": {"timeout": "lots"}},
            "auth": {"mode": "disabled"},
        }
    )
    with pytest.raises(ConfigurationError, match="POINTS_PROVIDERS__ACME__API_KEY") as raised:
        create_app(settings, store=make_store({}))
    assert "POINTS_PROVIDERS__ACME__TIMEOUT" in str(raised.value)

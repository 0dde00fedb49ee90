"""A third program plugs in through the entry-point group, with no change to the gateway."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.errors import ConfigurationError
from app.main import create_app
from app.providers.registry import ENTRY_POINT_GROUP, discover_plugins
from app.settings import Settings
from tests.conftest import make_store, serve_in_process

ACME_MODULE = """
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel

from app.errors import ProviderRejected
from app.providers.base import ProviderBalance, ProviderPlugin, expect


class AcmeSettings(BaseModel):
    bonus: int = 0


class AcmeAccount(BaseModel):
    member: str


class AcmeProvider:
    def __init__(self, settings):
        self._settings = settings

    name = "acme"
    timeout = 1.0

    async def fetch_balance(self, account, call):
        member = expect(AcmeAccount, account).member
        if member == "banned":
            raise ProviderRejected("member is banned", provider="acme", upstream_code="B1")
        points = Decimal(len(member) + self._settings.bonus)
        return ProviderBalance(points, "acme_star", datetime.now(UTC))

    async def aclose(self):
        pass


plugin = ProviderPlugin(
    name="acme",
    display_name="Acme stars",
    unit="acme_star",
    settings_model=AcmeSettings,
    account_model=AcmeAccount,
    build=lambda settings, deps: AcmeProvider(expect(AcmeSettings, settings)),
)
"""


@pytest.fixture
def acme_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install a tiny distribution `acme-points` that declares the entry point."""
    (tmp_path / "acme_points.py").write_text(textwrap.dedent(ACME_MODULE))
    dist = tmp_path / "acme_points-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-points\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nacme = acme_points:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_points", raising=False)


@pytest.mark.usefixtures("acme_installed")
def test_entry_point_plugin_is_discovered() -> None:
    plugins = discover_plugins()
    assert {"benepia", "gafapay", "acme"} <= set(plugins)
    assert plugins["acme"].display_name == "Acme stars"


@pytest.mark.usefixtures("acme_installed")
async def test_third_program_is_served_through_the_unchanged_api() -> None:
    settings = Settings.model_validate(
        {
            "enabled_providers": ["acme"],
            "providers": {"acme": {"bonus": 10}},
            "auth": {"mode": "disabled"},
        }
    )
    accounts = {
        "dave": {"acme": {"member": "dave"}},
        "eve": {"acme": {"member": "banned"}},
    }
    # Seeded accounts are validated against the plugin's own account schema.
    store = MemoryAccountStore(load_accounts(accounts, discover_plugins(), source="test"))
    app = create_app(settings, store=store)
    async with serve_in_process(app) as client:
        providers = (await client.get("/providers")).json()["providers"]
        closed = {"state": "closed", "consecutive_failures": 0, "retry_after": None}
        assert providers == [
            {"name": "acme", "display_name": "Acme stars", "unit": "acme_star", "circuit": closed}
        ]
        dave = (await client.get("/users/dave/points")).json()
        assert dave["balances"][0]["points"] == "14"
        assert dave["balances"][0]["unit"] == "acme_star"
        eve = await client.get("/users/eve/points/acme")
        assert eve.status_code == 422
        assert eve.json()["code"] == "provider_rejected"
        assert eve.json()["upstream_code"] == "B1"


@pytest.mark.usefixtures("acme_installed")
def test_plugin_settings_are_validated_at_start() -> None:
    settings = Settings.model_validate(
        {
            "enabled_providers": ["acme"],
            "providers": {"acme": {"bonus": "lots"}},
            "auth": {"mode": "disabled"},
        }
    )
    with pytest.raises(ConfigurationError, match="POINTS_PROVIDERS__ACME__BONUS"):
        create_app(settings, store=make_store({}))

"""Configuration errors: what stops create_app / the lifespan, and what the messages say."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from app.accounts.memory_store import MemoryAccountStore, load_accounts_file
from app.errors import ConfigurationError
from app.main import create_app
from app.providers.registry import BUILTIN_PLUGINS
from app.settings import Settings
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_PASSWORD,
    COMPANY_ID,
    CURRENCY,
    GAFAPAY,
    GAFAPAY_TOKEN,
    GAFAPAY_URL,
    IAMPORT,
    IMP_KEY,
    IMP_SECRET,
    SECRETS,
    gafapay_ok,
    make_settings,
    make_store,
    serve_in_process,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No POINTS_* variables from the machine leak into Settings()."""
    for name in list(os.environ):
        if name.upper().startswith("POINTS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def provider_values(**changes: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Both providers' valid settings, with per-provider replacements (value None drops a key)."""
    values: dict[str, dict[str, object]] = {
        "benepia": {
            "base_url": IAMPORT,
            "imp_key": IMP_KEY,
            "imp_secret": IMP_SECRET,
            "channel_key": "channel-key-test",
        },
        "gafapay": {"base_url": GAFAPAY, "company_id": COMPANY_ID, "token": GAFAPAY_TOKEN},
    }
    for provider, fields in changes.items():
        for key, value in fields.items():
            if value is None:
                values[provider].pop(key, None)
            else:
                values[provider][key] = value
    return values


def config_error(**overrides: Any) -> str:
    """The ConfigurationError message create_app raises for these settings."""
    with pytest.raises(ConfigurationError) as caught:
        create_app(make_settings(**overrides), store=make_store())
    message = str(caught.value)
    for secret in (*SECRETS, "sEcReT"):
        assert secret not in message
    return message


@pytest.mark.parametrize(
    ("provider", "field", "env_name"),
    [
        ("benepia", "imp_key", "POINTS_PROVIDERS__BENEPIA__IMP_KEY"),
        ("benepia", "imp_secret", "POINTS_PROVIDERS__BENEPIA__IMP_SECRET"),
        ("gafapay", "token", "POINTS_PROVIDERS__GAFAPAY__TOKEN"),
        ("gafapay", "company_id", "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID"),
    ],
)
def test_missing_credential_names_the_env_var(provider: str, field: str, env_name: str) -> None:
    message = config_error(providers=provider_values(**{provider: {field: None}}))
    assert env_name in message


@pytest.mark.parametrize(
    ("provider", "field", "value", "env_name"),
    [
        ("benepia", "imp_key", "", "POINTS_PROVIDERS__BENEPIA__IMP_KEY"),
        ("benepia", "imp_secret", "", "POINTS_PROVIDERS__BENEPIA__IMP_SECRET"),
        ("benepia", "timeout", 0, "POINTS_PROVIDERS__BENEPIA__TIMEOUT"),
        ("benepia", "token_refresh_margin", 60, "POINTS_PROVIDERS__BENEPIA__TOKEN_REFRESH_MARGIN"),
        ("benepia", "pg", "html5_inicis.sEcReT", "POINTS_PROVIDERS__BENEPIA__PG"),
        ("benepia", "base_url", "ftp://iamport.test", "POINTS_PROVIDERS__BENEPIA__BASE_URL"),
        ("gafapay", "company_id", "not-hex-sEcReT", "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID"),
    ],
)
def test_invalid_value_names_the_env_var_not_the_value(
    provider: str, field: str, value: object, env_name: str
) -> None:
    message = config_error(providers=provider_values(**{provider: {field: value}}))
    assert env_name in message


def test_every_problem_is_reported_at_once() -> None:
    message = config_error(
        providers=provider_values(benepia={"imp_key": None}, gafapay={"token": None})
    )
    assert "POINTS_PROVIDERS__BENEPIA__IMP_KEY" in message
    assert "POINTS_PROVIDERS__GAFAPAY__TOKEN" in message


def test_unknown_enabled_provider() -> None:
    message = config_error(enabled_providers=["benepia", "gafapay", "nope"])
    assert "POINTS_ENABLED_PROVIDERS" in message
    assert "nope" in message


def test_settings_for_unknown_provider() -> None:
    values: dict[str, Any] = provider_values()
    values["bogus"] = {"token": "sEcReT-bogus"}
    message = config_error(providers=values)
    assert "POINTS_PROVIDERS__BOGUS" in message


@pytest.mark.parametrize(
    ("provider", "typo", "env_name"),
    [
        ("benepia", "imp_secrett", "POINTS_PROVIDERS__BENEPIA__IMP_SECRETT"),
        ("benepia", "chanel_key", "POINTS_PROVIDERS__BENEPIA__CHANEL_KEY"),
        ("gafapay", "tokn", "POINTS_PROVIDERS__GAFAPAY__TOKN"),
    ],
)
def test_typo_in_provider_setting_is_refused(provider: str, typo: str, env_name: str) -> None:
    message = config_error(providers=provider_values(**{provider: {typo: "sEcReT-typo-value"}}))
    assert env_name in message


def test_typo_in_outbound_setting_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("POINTS_OUTBOUND__MAX_CONECTIONS", "5")
    with pytest.raises(ValidationError):
        Settings()


def test_valid_outbound_setting_is_read_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("POINTS_OUTBOUND__MAX_CONNECTIONS", "5")
    assert Settings().outbound.max_connections == 5


def test_plain_http_without_sandbox_fails_at_create_app() -> None:
    message = config_error(gafapay_url="http://gafapay.test:8080", sandbox=False)
    assert "POINTS_PROVIDERS__GAFAPAY__BASE_URL" in message
    assert "POINTS_SANDBOX" in message


async def test_plain_http_with_sandbox_is_allowed(upstream: respx.MockRouter) -> None:
    url = "http://gafapay.test:8080"
    settings = make_settings(gafapay_url=url)
    assert settings.sandbox is True
    upstream.get(f"{url}/gafapay/v3/reward_promotion/user_points").mock(return_value=gafapay_ok())
    transport = httpx.MockTransport(upstream.async_handler)
    app = create_app(settings, transport=transport, store=make_store())
    async with serve_in_process(app) as client:
        r = await client.get("/users/alice/points/gafapay")
    assert r.status_code == 200, r.text


# --- from the environment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gafapay", ["gafapay"]),
        ("benepia,gafapay", ["benepia", "gafapay"]),
        (" benepia , gafapay ,", ["benepia", "gafapay"]),
    ],
)
def test_enabled_providers_from_env(
    clean_env: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    clean_env.setenv("POINTS_ENABLED_PROVIDERS", raw)
    assert Settings().enabled_providers == expected


def test_default_enabled_providers(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().enabled_providers == ["benepia", "gafapay"]


async def test_gafapay_only_gateway_from_env(
    clean_env: pytest.MonkeyPatch, upstream: respx.MockRouter
) -> None:
    clean_env.setenv("POINTS_ENABLED_PROVIDERS", "gafapay")
    clean_env.setenv("POINTS_AUTH__MODE", "disabled")
    clean_env.setenv("POINTS_PROVIDERS__GAFAPAY__BASE_URL", GAFAPAY)
    clean_env.setenv("POINTS_PROVIDERS__GAFAPAY__COMPANY_ID", COMPANY_ID)
    clean_env.setenv("POINTS_PROVIDERS__GAFAPAY__TOKEN", GAFAPAY_TOKEN)
    clean_env.setenv("POINTS_REQUEST_DEADLINE", "2.5")
    settings = Settings()
    assert settings.request_deadline == 2.5
    route = upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())
    app = create_app(
        settings,
        transport=httpx.MockTransport(upstream.async_handler),
        store=make_store(),
    )
    async with serve_in_process(app) as client:
        providers = (await client.get("/providers")).json()["providers"]
        assert [p["name"] for p in providers] == ["gafapay"]
        r = await client.get("/users/alice/points")
        assert r.status_code == 200, r.text
        assert [b["provider"] for b in r.json()["balances"]] == ["gafapay"]
    assert route.calls.last.request.headers["authorization"] == f"Token {GAFAPAY_TOKEN}"


def test_missing_env_credential_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("POINTS_ENABLED_PROVIDERS", "benepia")
    clean_env.setenv("POINTS_PROVIDERS__BENEPIA__IMP_SECRET", IMP_SECRET)
    with pytest.raises(ConfigurationError) as caught:
        create_app(Settings(), store=make_store())
    assert "POINTS_PROVIDERS__BENEPIA__IMP_KEY" in str(caught.value)
    assert IMP_SECRET not in str(caught.value)


# --- the accounts file ----------------------------------------------------------------------------


PLUGINS = {p.name: p for p in BUILTIN_PLUGINS}


def write_accounts(tmp_path: Path, accounts: object) -> Path:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(accounts), encoding="utf-8")
    return path


def test_accounts_file_bad_hex_id_names_field_not_value(tmp_path: Path) -> None:
    bad = "zz-not-hex-sEcReT"
    path = write_accounts(
        tmp_path, {"alice": {"gafapay": {"gafapay_user_id": bad, "currency_id": CURRENCY}}}
    )
    with pytest.raises(ConfigurationError) as caught:
        load_accounts_file(path, PLUGINS)
    message = str(caught.value)
    assert "alice.gafapay.gafapay_user_id" in message
    assert str(path) in message
    assert bad not in message
    assert "sEcReT" not in message


def test_accounts_file_bad_password_and_extra_field_do_not_leak(tmp_path: Path) -> None:
    path = write_accounts(
        tmp_path,
        {
            "carol": {
                "benepia": {
                    "benepia_user": "carol.lee",
                    "benepia_password": "",
                    "benepia_pasword": BENEPIA_PASSWORD,
                }
            }
        },
    )
    with pytest.raises(ConfigurationError) as caught:
        load_accounts_file(path, PLUGINS)
    message = str(caught.value)
    assert "carol.benepia.benepia_password" in message
    assert "carol.benepia.benepia_pasword" in message
    assert BENEPIA_PASSWORD not in message


def test_accounts_file_for_disabled_provider(tmp_path: Path) -> None:
    path = write_accounts(
        tmp_path,
        {"bob": {"gafapay": {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}}},
    )
    with pytest.raises(ConfigurationError) as caught:
        load_accounts_file(path, {"benepia": PLUGINS["benepia"]})
    assert "bob.gafapay" in str(caught.value)


def test_accounts_file_not_json(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text('{"alice": sEcReT-pw', encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_accounts_file(path, PLUGINS)
    assert str(path) in str(caught.value)
    assert "sEcReT" not in str(caught.value)


def test_accounts_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ConfigurationError) as caught:
        load_accounts_file(path, PLUGINS)
    assert str(path) in str(caught.value)


async def test_valid_accounts_file_is_served(tmp_path: Path, upstream: respx.MockRouter) -> None:
    path = write_accounts(
        tmp_path,
        {"erin": {"gafapay": {"gafapay_user_id": "00ABCDEF", "currency_id": CURRENCY}}},
    )
    upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok(user_id="abcdef"))
    app = create_app(
        make_settings(),
        transport=httpx.MockTransport(upstream.async_handler),
        store=MemoryAccountStore(load_accounts_file(path, PLUGINS)),
    )
    async with serve_in_process(app) as client:
        r = await client.get("/users/erin/points")
    assert r.status_code == 200, r.text
    assert [b["status"] for b in r.json()["balances"]] == ["ok"]

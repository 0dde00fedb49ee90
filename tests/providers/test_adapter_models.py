"""The adapters' settings and account models: every limit at its boundary, both sides."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from app.providers.benepia import BenepiaAccount, BenepiaSettings
from app.providers.gafapay import GafapayAccount, GafapaySettings, same_id
from tests.conftest import ALICE_GAFAPAY, COMPANY_ID, CURRENCY, GAFAPAY_TOKEN, IMP_KEY, IMP_SECRET


def gafapay_settings(**values: object) -> GafapaySettings:
    return GafapaySettings.model_validate(
        {"company_id": COMPANY_ID, "token": GAFAPAY_TOKEN, **values}
    )


def gafapay_account(**values: object) -> GafapayAccount:
    return GafapayAccount.model_validate(
        {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY, **values}
    )


def benepia_settings(**values: object) -> BenepiaSettings:
    return BenepiaSettings.model_validate({"imp_key": IMP_KEY, "imp_secret": IMP_SECRET, **values})


def refused(build: Any, **values: object) -> None:
    with pytest.raises(ValidationError):
        build(**values)


def property_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    schema = model.model_json_schema()["properties"][name]
    if "anyOf" in schema:  # an optional field: the non-null branch
        (schema,) = [s for s in schema["anyOf"] if s.get("type") != "null"]
    assert isinstance(schema, dict)
    return schema


# --- GafaPay tokens travel in a header: 1-4096 printable ASCII characters, no spaces -------------

HEADER_SAFE = ["!", "~", "a" * 4096, GAFAPAY_TOKEN]
NOT_HEADER_SAFE = ["", "a" * 4097, "with space", "tab\there", "line\nbreak", "del\x7f", "é"]


@pytest.mark.parametrize("token", HEADER_SAFE)
def test_header_safe_tokens_are_accepted(token: str) -> None:
    assert gafapay_settings(token=token).token.get_secret_value() == token
    account_token = gafapay_account(token=token).token
    assert account_token is not None
    assert account_token.get_secret_value() == token


@pytest.mark.parametrize("token", NOT_HEADER_SAFE)
def test_tokens_no_http_client_could_send_are_refused(token: str) -> None:
    refused(gafapay_settings, token=token)
    refused(gafapay_account, token=token)


def test_a_refused_token_says_what_a_token_must_be() -> None:
    with pytest.raises(ValidationError) as caught:
        gafapay_settings(token="with space")
    (error,) = caught.value.errors(include_input=False)
    assert error["loc"] == ("token",)
    assert "1-4096 printable ASCII characters without spaces" in error["msg"]


def test_gafapay_tokens_are_write_only_in_the_schema() -> None:
    settings_token = property_schema(GafapaySettings, "token")
    assert settings_token["writeOnly"] is True
    assert settings_token["pattern"] == "^[!-~]{1,4096}$"
    account_token = property_schema(GafapayAccount, "token")
    assert account_token["writeOnly"] is True
    assert account_token["maxLength"] == 4096


def test_the_account_token_is_optional() -> None:
    assert gafapay_account().token is None


# --- GafaPay ids and settings --------------------------------------------------------------------


def test_hex_ids_are_1_to_32_hex_characters_kept_lower_case() -> None:
    assert gafapay_account(gafapay_user_id="A" * 32).gafapay_user_id == "a" * 32
    assert gafapay_account(currency_id="0").currency_id == "0"
    for bad in ("", "a" * 33, "xyz", "12 34"):
        refused(gafapay_account, gafapay_user_id=bad)
        refused(gafapay_account, currency_id=bad)
        refused(gafapay_settings, company_id=bad)


def test_same_id_ignores_case_and_leading_zeros_only() -> None:
    assert same_id("00AbC", "abc")
    assert same_id("abc", "0ABC")
    assert not same_id("abc", "abd")
    assert not same_id("abc0", "abc")


def test_gafapay_timeout_is_above_0_and_at_most_60() -> None:
    assert gafapay_settings().timeout == 3.0
    assert gafapay_settings(timeout=0.001).timeout == 0.001
    assert gafapay_settings(timeout=60).timeout == 60
    refused(gafapay_settings, timeout=0)
    refused(gafapay_settings, timeout=60.001)


def test_gafapay_models_refuse_unknown_fields() -> None:
    refused(gafapay_settings, company="x")
    refused(gafapay_account, user_id="x")


# --- Benepia -------------------------------------------------------------------------------------


def test_benepia_defaults() -> None:
    settings = benepia_settings()
    assert settings.base_url == "https://api.iamport.kr"
    assert settings.timeout == 4.0
    assert settings.token_refresh_margin == 30.0
    assert settings.channel_key is None
    assert settings.pg is None


def test_benepia_timeout_is_above_0_and_at_most_60() -> None:
    assert benepia_settings(timeout=0.001).timeout == 0.001
    assert benepia_settings(timeout=60).timeout == 60
    refused(benepia_settings, timeout=0)
    refused(benepia_settings, timeout=60.001)


def test_token_refresh_margin_is_0_up_to_below_60() -> None:
    assert benepia_settings(token_refresh_margin=0).token_refresh_margin == 0
    assert benepia_settings(token_refresh_margin=59.9).token_refresh_margin == 59.9
    refused(benepia_settings, token_refresh_margin=-0.1)
    refused(benepia_settings, token_refresh_margin=60)


def test_iamport_key_and_secret_must_not_be_empty() -> None:
    assert benepia_settings(imp_key="k").imp_key == "k"
    refused(benepia_settings, imp_key="")
    assert benepia_settings(imp_secret="s").imp_secret.get_secret_value() == "s"
    refused(benepia_settings, imp_secret="")


def test_blank_channel_key_and_pg_mean_unset() -> None:
    settings = benepia_settings(channel_key="", pg="")
    assert (settings.channel_key, settings.pg) == (None, None)
    assert benepia_settings(channel_key="c").channel_key == "c"


@pytest.mark.parametrize("pg", ["kcp", "kcp.A1_b-2"])
def test_kcp_pg_values_are_accepted(pg: str) -> None:
    assert benepia_settings(pg=pg).pg == pg


@pytest.mark.parametrize("pg", ["nice", "kcp.", "kcpx", "kcp.a b"])
def test_other_pg_values_are_refused(pg: str) -> None:
    refused(benepia_settings, pg=pg)


def test_benepia_password_is_1_to_256_characters_and_write_only() -> None:
    def account(password: str) -> BenepiaAccount:
        return BenepiaAccount.model_validate(
            {"benepia_user": "alice", "benepia_password": password}
        )

    assert account("p").benepia_password.get_secret_value() == "p"
    assert len(account("p" * 256).benepia_password.get_secret_value()) == 256
    with pytest.raises(ValidationError):
        account("")
    with pytest.raises(ValidationError):
        account("p" * 257)
    assert property_schema(BenepiaAccount, "benepia_password")["writeOnly"] is True


def test_benepia_models_refuse_unknown_fields() -> None:
    refused(benepia_settings, secret="x")
    with pytest.raises(ValidationError):
        BenepiaAccount.model_validate(
            {"benepia_user": "alice", "benepia_password": "p", "password": "x"}
        )

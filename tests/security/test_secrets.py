"""Secrets (iamport secret, GafaPay token, Benepia password) never leave the gateway's hands."""

from __future__ import annotations

import logging

import httpx
import pytest
import respx
from pydantic import BaseModel

from app.accounts.memory_store import load_accounts
from app.errors import ConfigurationError, GatewayError
from app.gateway import Gateway, plan_gateway
from app.providers.benepia import BenepiaAccount, BenepiaSettings
from app.providers.gafapay import GafapayAccount, GafapaySettings
from app.providers.registry import BUILTIN_PLUGINS
from tests.conftest import (
    BENEPIA_PASSWORD,
    BENEPIA_URL,
    GAFAPAY_TOKEN,
    GAFAPAY_URL,
    IMP_SECRET,
    SECRETS,
    TEST_ACCOUNTS,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    make_settings,
    serve_in_process,
    token_ok,
)
from tests.support.logs import record_texts


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


async def test_full_flow_leaks_no_secret(
    gateway_app: AppFactory,
    upstream: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
    rendered_errors: list[GatewayError],
) -> None:
    caplog.set_level(logging.DEBUG)
    token_route = upstream.post(TOKEN_URL)
    benepia_route = upstream.post(BENEPIA_URL)
    gafapay_route = upstream.get(GAFAPAY_URL)
    responses: list[httpx.Response] = []
    application = gateway_app()

    async with serve_in_process(application) as client:
        # 1. iamport refuses the gateway's key: auth failed, the secret must not be echoed.
        token_route.mock(return_value=httpx.Response(401, json={"code": -1, "message": "no"}))
        gafapay_route.mock(return_value=gafapay_ok())
        responses.append(await client.get("/users/carol/points/benepia"))
        assert responses[-1].json()["code"] == "upstream_auth_failed"

        # 2. alice, merged, everything fine.
        token_route.mock(return_value=token_ok())
        benepia_route.mock(return_value=benepia_ok())
        responses.append(await client.get("/users/alice/points"))
        assert responses[-1].status_code == 200

        # 3. a rejected Benepia login.
        rejected = {"code": 1, "message": "비밀번호가 일치하지 않습니다.", "response": None}
        benepia_route.mock(return_value=httpx.Response(200, json=rejected))
        responses.append(await client.get("/users/alice/points/benepia"))
        assert responses[-1].json()["code"] == "provider_rejected"

        # 4. both providers fail with 500; GafaPay refuses its token; a data call 401s twice.
        benepia_route.mock(return_value=httpx.Response(500, text="<html>boom</html>"))
        gafapay_route.mock(return_value=httpx.Response(500, json={"success": 0, "error": ["x"]}))
        responses.append(await client.get("/users/alice/points"))
        assert responses[-1].status_code == 502
        gafapay_route.mock(return_value=httpx.Response(401, json={"message": "UNAUTHORIZED"}))
        responses.append(await client.get("/users/alice/points/gafapay"))
        benepia_route.mock(return_value=httpx.Response(401))
        responses.append(await client.get("/users/alice/points/benepia"))
        assert responses[-1].json()["code"] == "upstream_auth_failed"

        # 5. an unexpected failure inside the outbound call (logged with its traceback).
        benepia_route.mock(side_effect=RuntimeError("transport exploded"))
        responses.append(await client.get("/users/alice/points/benepia"))
        assert responses[-1].json()["code"] == "internal_error"

        # 6. caller mistakes, the provider list and the OpenAPI document.
        responses.append(await client.get("/users/al!ce/points"))
        responses.append(await client.get("/users/alice/points/nope"))
        responses.append(await client.get("/users/dave/points/benepia"))
        responses.append(await client.get("/providers"))
        responses.append(await client.get("/openapi.json"))
        assert responses[-1].status_code == 200

        gateway = application.state.gateway
        assert isinstance(gateway, Gateway)
        linked = await gateway.store.linked("alice")

    # The secrets really were used, so their absence below means something.
    assert BENEPIA_PASSWORD.encode() in benepia_route.calls[0].request.content
    assert IMP_SECRET.encode() in token_route.calls[0].request.content
    assert gafapay_route.calls[0].request.headers["authorization"] == f"Token {GAFAPAY_TOKEN}"

    for response in responses:
        assert_clean(response.text, f"the body of {response.request.url}")
        assert_clean(repr(response.headers.multi_items()), f"headers of {response.request.url}")
    assert caplog.records, "the flow logged nothing at DEBUG"
    assert any(r.exc_info for r in caplog.records), "the unexpected failure was not logged"
    for record in caplog.records:
        for text in record_texts(record):
            assert_clean(text, f"log record {record.name}:{record.levelname}")
    assert_clean(caplog.text, "the formatted log")
    assert rendered_errors
    for error in rendered_errors:
        assert_clean(repr(error), f"repr({type(error).__name__})")
        assert_clean(str(error), f"str({type(error).__name__})")
        assert_clean(repr(vars(error)), f"vars({type(error).__name__})")
    for account in linked.values():
        assert isinstance(account, BaseModel)
        assert_clean(repr(account), f"repr({type(account).__name__})")
        assert_clean(str(account), f"str({type(account).__name__})")
        assert_clean(account.model_dump_json(), f"JSON of {type(account).__name__}")


def test_account_and_provider_settings_models_hide_secrets() -> None:
    settings = make_settings()
    models = [
        BenepiaSettings.model_validate(settings.providers["benepia"]),
        GafapaySettings.model_validate(settings.providers["gafapay"]),
        BenepiaAccount.model_validate(TEST_ACCOUNTS["alice"]["benepia"]),
        GafapayAccount.model_validate({**TEST_ACCOUNTS["alice"]["gafapay"], "token": "x" * 3}),
        GafapayAccount.model_validate(
            {"gafapay_user_id": "a", "currency_id": "b", "token": GAFAPAY_TOKEN}
        ),
    ]
    for model in models:
        name = type(model).__name__
        assert_clean(repr(model), f"repr({name})")
        assert_clean(str(model), f"str({name})")
        assert_clean(model.model_dump_json(), f"JSON of {name}")


def test_settings_repr_hides_secrets() -> None:
    settings = make_settings()

    assert_clean(repr(settings), "repr(Settings)")
    assert_clean(str(settings), "str(Settings)")


def test_configuration_errors_name_fields_not_values() -> None:
    plugins = {p.name: p for p in BUILTIN_PLUGINS}
    bad_accounts = {
        "eve": {"benepia": {"benepia_user": "", "benepia_password": BENEPIA_PASSWORD * 20}},
        "mallory": {"gafapay": {"gafapay_user_id": GAFAPAY_TOKEN, "currency_id": IMP_SECRET}},
    }

    with pytest.raises(ConfigurationError) as raised:
        load_accounts(bad_accounts, plugins, source="test")

    assert "benepia_password" in str(raised.value)
    assert_clean(str(raised.value), "the accounts ConfigurationError")

    bad_settings = make_settings()
    bad_settings.providers["gafapay"] = {
        **bad_settings.providers["gafapay"],
        "company_id": GAFAPAY_TOKEN,
        "unexpected": IMP_SECRET,
    }
    with pytest.raises(ConfigurationError) as raised:
        plan_gateway(bad_settings)
    assert "COMPANY_ID" in str(raised.value)
    assert_clean(str(raised.value), "the settings ConfigurationError")

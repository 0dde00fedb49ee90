"""Linked-account secrets never leave sealed storage or the outbound call, on both backends.

One flow (link with verify, merged and single queries, one-shot queries, refusals, invalid
bodies carrying secrets, unlink) is logged at DEBUG; no secret may then appear in a log record,
a response (body or header), a rendered GatewayError, the store's repr, the OpenAPI document,
or the raw `sealed` column.
"""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.schema import linked_accounts as t
from app.errors import GatewayError
from app.gateway import Gateway
from app.main import create_app
from tests.accounts.conftest import KEY_A, StoreFactory
from tests.conftest import (
    ALICE_GAFAPAY,
    CURRENCY,
    GAFAPAY_TOKEN,
    IMP_SECRET,
    SECRETS,
    customer_token,
    make_settings,
    mock_upstreams,
    serve_in_process,
)
from tests.support.logs import record_texts

LINK_PASSWORD = "sEcReT-linked-benepia-pw-0101"
ONE_SHOT_PASSWORD = "sEcReT-one-shot-benepia-pw-0102"
WRONG_PASSWORD = "sEcReT-wrong-benepia-pw-0103"
ACCOUNT_TOKEN = customer_token(ALICE_GAFAPAY, jti="sEcReT-per-account-gafapay-token-0104")
KEY_MATERIAL = KEY_A.partition(":")[2]
_KEY_BYTES = base64.urlsafe_b64decode(KEY_MATERIAL + "=" * (-len(KEY_MATERIAL) % 4))

PLAINTEXT_SECRETS = (LINK_PASSWORD, ONE_SHOT_PASSWORD, WRONG_PASSWORD, ACCOUNT_TOKEN)
ALL_SECRETS = (
    *PLAINTEXT_SECRETS,
    *SECRETS,
    KEY_MATERIAL,
    base64.b64encode(_KEY_BYTES).decode().rstrip("="),
    _KEY_BYTES.hex(),
)


JSON_HEADERS = {"content-type": "application/json"}


def assert_clean(text: str, where: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


async def sealed_column(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        values = (await conn.execute(select(t.c.sealed, t.c.masked_id))).all()
    return [f"{sealed} {masked}" for sealed, masked in values]


async def test_link_query_unlink_flow_leaks_no_secret(
    upstream: respx.MockRouter,
    make_sql_store: StoreFactory,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
    rendered_errors: list[GatewayError],
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens, point, gafa = mock_upstreams(upstream)
    store = make_sql_store()
    application = create_app(
        make_settings(), transport=httpx.MockTransport(upstream.async_handler), store=store
    )
    benepia = {"benepia_user": "alice.kim", "benepia_password": LINK_PASSWORD}
    gafapay = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY, "token": ACCOUNT_TOKEN}
    rejected = httpx.Response(200, json={"code": 1, "message": "로그인 실패", "response": None})
    responses: list[httpx.Response] = []

    async with serve_in_process(application) as api:

        async def call(
            method: str, path: str, status: int, *, body: object = None, content: str = ""
        ) -> None:
            r = await (
                api.request(method, path, content=content, headers=JSON_HEADERS)
                if content
                else api.request(method, path, json=body)
            )
            responses.append(r)
            assert r.status_code == status, f"{method} {path}: {r.text}"

        # Link both accounts, each verified with the provider first.
        await call("PUT", "/users/alice/accounts/benepia?verify=true", 201, body=benepia)
        await call("PUT", "/users/alice/accounts/gafapay?verify=true", 201, body=gafapay)
        sealed = await sealed_column(engine)
        # Query them: merged and single.
        await call("GET", "/users/alice/points", 200)
        await call("GET", "/users/alice/points/benepia", 200)
        await call("GET", "/users/alice/points/gafapay", 200)
        await call("GET", "/users/alice/accounts", 200)
        # One-shot queries: with the gateway-wide GafaPay token, and a refused password.
        once = {"benepia_user": "alice.kim", "benepia_password": ONE_SHOT_PASSWORD}
        await call("POST", "/users/alice/points/benepia", 200, body=once)
        await call("POST", "/users/alice/points/gafapay", 200, body={**gafapay, "token": None})
        point.mock(return_value=rejected)
        wrong = {**benepia, "benepia_password": WRONG_PASSWORD}
        await call("POST", "/users/alice/points/benepia", 422, body=wrong)
        await call("PUT", "/users/alice/accounts/benepia?verify=true", 422, body=wrong)
        await call("GET", "/users/alice/points/benepia", 422)
        # Invalid bodies that carry secrets.
        for content in (
            json.dumps([LINK_PASSWORD, ACCOUNT_TOKEN]),
            json.dumps(ONE_SHOT_PASSWORD),
            json.dumps({**benepia, "extra": LINK_PASSWORD}),
            json.dumps({**benepia, "benepia_password": LINK_PASSWORD * 20}),
            json.dumps({**gafapay, "gafapay_user_id": ACCOUNT_TOKEN}),
            '{"benepia_password": "' + LINK_PASSWORD + '"',
        ):
            await call("PUT", "/users/alice/accounts/benepia", 422, content=content)
            await call("POST", "/users/alice/points/gafapay", 422, content=content)
        # Unlink, and the documentation.
        await call("DELETE", "/users/alice/accounts/benepia", 204)
        await call("DELETE", "/users/alice/accounts/gafapay", 204)
        await call("GET", "/openapi.json", 200)
        gateway = application.state.gateway
        assert isinstance(gateway, Gateway)
        assert gateway.store is store

    # The secrets really were used, so their absence below means something.
    sent = [json.loads(c.request.content)["benepia_password"] for c in point.calls]
    assert {LINK_PASSWORD, ONE_SHOT_PASSWORD, WRONG_PASSWORD} <= set(sent)
    authorizations = {c.request.headers["authorization"] for c in gafa.calls}
    assert authorizations == {f"Token {ACCOUNT_TOKEN}", f"Token {GAFAPAY_TOKEN}"}
    assert IMP_SECRET.encode() in tokens.calls[0].request.content
    assert len(sealed) == 2

    for value in sealed:
        for secret in PLAINTEXT_SECRETS:
            assert secret not in value, "a plaintext secret is in the sealed column"
    for response in responses:
        where = f"{response.request.method} {response.request.url}"
        assert_clean(response.text, f"the body of {where}")
        assert_clean(repr(response.headers.multi_items()), f"the headers of {where}")
    assert caplog.records, "the flow logged nothing at DEBUG"
    for record in caplog.records:
        for text in record_texts(record):
            assert_clean(text, f"log record {record.name}:{record.levelname}")
    assert_clean(caplog.text, "the formatted log")
    codes = {error.code for error in rendered_errors}
    assert {"provider_rejected", "invalid_request"} <= codes
    for error in rendered_errors:
        assert_clean(repr(error), f"repr({type(error).__name__})")
        assert_clean(str(error), f"str({type(error).__name__})")
    assert_clean(repr(store), "repr(store)")
    assert_clean(str(store), "str(store)")
    assert_clean(responses[-1].text, "the OpenAPI document")

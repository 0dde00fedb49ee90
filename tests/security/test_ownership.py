"""Proof of account ownership: a GafaPay id alone no longer reads or links anyone's balance.

The attack of issue 13: with alice's token, `POST /users/alice/points/gafapay` with bob's GafaPay
ids answered bob's balance, and `PUT /users/alice/accounts/gafapay` linked it for good. Each
provider now says what proves an account (app/accounts/ownership.py): Benepia's password,
GafaPay's customer session token (`sub` = the GafaPay user id), or nothing (ids only), which only
a service holding `accounts:link_trusted` may vouch for.
"""

from __future__ import annotations

import base64
import json

import pytest

from app.providers.gafapay import GafapayAccount
from app.security.api_keys import hash_key
from tests.conftest import ALICE_GAFAPAY, CURRENCY, customer_token
from tests.security.conftest import (
    ALICE_BENEPIA,
    API_KEY_SETTINGS,
    HS_SECRET,
    ServeGateway,
    api_key,
    assert_problem,
    auth_config,
    bearer,
    claims_for,
    hs256,
    key_with,
    mock_providers,
    secure_settings,
    service_token,
    store_snapshot,
    user_token,
)

BOB_GAFAPAY = "0b0b"
BOB_IDS = {"gafapay_user_id": BOB_GAFAPAY, "currency_id": CURRENCY}
ALICE_IDS = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
ONE_SHOT = "/users/alice/points/gafapay"
LINK = "/users/alice/accounts/gafapay"
TRUSTED_KEY = "pgk-trusted-linker-0123456789abcdef0123"
WRITER_KEY_ONLY = "pgk-writer-only-0123456789abcdef012345"
KEYS = [
    *API_KEY_SETTINGS,
    {
        "name": "trusted-linker",
        "sha256": hash_key(TRUSTED_KEY),
        "scopes": ["points:read", "accounts:write", "accounts:link_trusted"],
    },
    {
        "name": "writer-only",
        "sha256": hash_key(WRITER_KEY_ONLY),
        "scopes": ["points:read", "accounts:write"],
    },
]
SETTINGS = secure_settings(auth=auth_config(api_keys=KEYS))
ENDPOINTS = pytest.mark.parametrize(("method", "path"), [("POST", ONE_SHOT), ("PUT", LINK)])


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@ENDPOINTS
async def test_a_user_cannot_read_or_link_another_gafapay_account_by_its_ids(
    serve_gateway: ServeGateway, method: str, path: str
) -> None:
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        before = await store_snapshot(gw.store)
        response = await gw.client.request(
            method, path, json=BOB_IDS, headers=bearer(user_token("alice"))
        )
        body = assert_problem(response, 403, "ownership_proof_required")
        assert gw.upstream.calls.call_count == 0
        assert await store_snapshot(gw.store) == before
    assert body["provider"] == "gafapay"
    # The detail says what to send instead.
    assert "`token`" in body["detail"]
    assert "accounts:link_trusted" in body["detail"]
    assert "1234.56" not in response.text


@ENDPOINTS
async def test_ids_only_is_refused_even_for_the_users_own_ids(
    serve_gateway: ServeGateway, method: str, path: str
) -> None:
    """The gateway cannot tell alice's ids from bob's: ids alone never prove anything."""
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.request(
            method, path, json=ALICE_IDS, headers=bearer(user_token("alice"))
        )
        assert_problem(response, 403, "ownership_proof_required")
        assert gw.upstream.calls.call_count == 0


@ENDPOINTS
async def test_the_users_own_gafapay_token_proves_the_account(
    serve_gateway: ServeGateway, method: str, path: str
) -> None:
    token = customer_token(ALICE_GAFAPAY)
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.request(
            method, path, json={**ALICE_IDS, "token": token}, headers=bearer(user_token("alice"))
        )
        assert response.status_code in (200, 201), response.text
        if method == "PUT":
            assert "gafapay" in await gw.store.linked("alice")
        else:
            # What is asked upstream is the user's own token: GafaPay checks its signature.
            sent = gw.upstream.calls.last.request.headers["authorization"]
            assert sent == f"Token {token}"


@pytest.mark.parametrize(
    "sub",
    [ALICE_GAFAPAY.upper(), "000" + ALICE_GAFAPAY[:29], ALICE_GAFAPAY],
    ids=["upper case", "leading zeros", "exact"],
)
async def test_token_subject_is_compared_as_a_gafapay_id(
    serve_gateway: ServeGateway, sub: str
) -> None:
    user_id = sub.lower().lstrip("0")  # the id the token names, however it is written
    account = {"gafapay_user_id": user_id, "currency_id": CURRENCY, "token": customer_token(sub)}
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.put(LINK, json=account, headers=bearer(user_token("alice")))
    assert response.status_code == 200, response.text  # replaces alice's linked account


BAD_TOKENS = {
    "another account's token": (customer_token(BOB_GAFAPAY), "was issued for another account"),
    "not a JWT": ("not-a-jwt", "is not a well-formed JWT"),
    "payload not JSON": (f"{_segment({'alg': 'HS256'})}.bm90IGpzb24.c2ln", "not a well-formed"),
    "no sub": (f"{_segment({'alg': 'HS256'})}.{_segment({'exp': 2**40})}.c2ln", "no `sub`"),
    "sub not a string": (f"{_segment({'alg': 'HS256'})}.{_segment({'sub': 11})}.c2ln", "no `sub`"),
    "expired": (customer_token(ALICE_GAFAPAY, lifetime=-3600), "has expired"),
}


@ENDPOINTS
@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=list(BAD_TOKENS))
async def test_a_token_that_does_not_prove_the_account_is_422(
    serve_gateway: ServeGateway, method: str, path: str, case: str
) -> None:
    token, reason = BAD_TOKENS[case]
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        before = await store_snapshot(gw.store)
        response = await gw.client.request(
            method, path, json={**ALICE_IDS, "token": token}, headers=bearer(user_token("alice"))
        )
        body = assert_problem(response, 422, "invalid_request", never=(token,))
        assert gw.upstream.calls.call_count == 0
        assert await store_snapshot(gw.store) == before
    assert reason in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "token"]


@ENDPOINTS
async def test_a_service_needs_link_trusted_to_vouch_for_ids(
    serve_gateway: ServeGateway, method: str, path: str
) -> None:
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        refused = await gw.client.request(
            method, path, json=BOB_IDS, headers=api_key(WRITER_KEY_ONLY)
        )
        assert_problem(refused, 403, "ownership_proof_required")
        assert gw.upstream.calls.call_count == 0
        allowed = await gw.client.request(method, path, json=BOB_IDS, headers=api_key(TRUSTED_KEY))
    assert allowed.status_code in (200, 201), allowed.text


async def test_a_service_jwt_with_link_trusted_may_vouch(serve_gateway: ServeGateway) -> None:
    token = service_token("onboarding", scope="accounts:write accounts:link_trusted")
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.put(LINK, json=BOB_IDS, headers=bearer(token))
        assert response.status_code == 200, response.text  # replaces alice's account
        linked = (await gw.store.linked("alice"))["gafapay"]
    assert isinstance(linked, GafapayAccount)
    assert linked.gafapay_user_id == BOB_GAFAPAY


async def test_a_user_token_claiming_link_trusted_is_still_a_user(
    serve_gateway: ServeGateway,
) -> None:
    token = hs256(claims_for("alice", scope="accounts:write accounts:link_trusted"), HS_SECRET)
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.put(LINK, json=BOB_IDS, headers=bearer(token))
        assert_problem(response, 403, "ownership_proof_required")


async def test_a_scope_only_key_without_link_trusted_cannot_vouch(
    serve_gateway: ServeGateway,
) -> None:
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.post(
            ONE_SHOT, json=BOB_IDS, headers=api_key(key_with("points:read"))
        )
        assert_problem(response, 403, "ownership_proof_required")


@ENDPOINTS
async def test_a_benepia_password_is_its_own_proof(
    serve_gateway: ServeGateway, method: str, path: str
) -> None:
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        response = await gw.client.request(
            method,
            path.replace("gafapay", "benepia"),
            json=ALICE_BENEPIA,
            headers=bearer(user_token("alice")),
        )
    assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("bad", ["alice\r\nkim", "alice\nkim", "alice\x00kim", "\x7f", "a\x85b"])
async def test_account_identifiers_refuse_control_characters(
    serve_gateway: ServeGateway, bad: str
) -> None:
    account = {**ALICE_BENEPIA, "benepia_user": bad}
    async with serve_gateway(SETTINGS) as gw:
        mock_providers(gw.upstream)
        for method, path in (("POST", ONE_SHOT), ("PUT", LINK)):
            response = await gw.client.request(
                method,
                path.replace("gafapay", "benepia"),
                json=account,
                headers=bearer(user_token("alice")),
            )
            body = assert_problem(response, 422, "invalid_request")
            assert body["errors"][0]["loc"] == ["body", "benepia_user"]
        assert gw.upstream.calls.call_count == 0

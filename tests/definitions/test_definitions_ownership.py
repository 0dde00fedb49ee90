"""Who may link a defined provider's account: each ownership kind, with authentication on."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.security.api_keys import hash_key
from tests.conftest import ALICE_GAFAPAY, COMPANY_ID, CURRENCY, GAFAPAY, customer_token, gafapay_ok
from tests.definitions.conftest import ACME, ACME_YAML, PIN, SESSION_YAML, ServeDefinitions, acme_ok
from tests.security.conftest import HS_SECRET, bearer, user_token

SHIPPED = Path(__file__).resolve().parents[2] / "app" / "definitions" / "shipped"
SHIPPED_GAFAPAY = (SHIPPED / "gafapay.yaml").read_text()
TRUSTED_KEY = "pgk-definitions-trusted-0123456789abcdef"
AUTH = {
    "mode": "required",
    "jwt_secret": HS_SECRET,
    "api_keys": [
        {
            "name": "onboarding",
            "sha256": hash_key(TRUSTED_KEY),
            "scopes": ["points:read", "accounts:write", "accounts:link_trusted"],
        }
    ],
}


def alice() -> dict[str, str]:
    """Alice's bearer header, minted when a test runs (one minted at collection could expire
    before a slow suite reaches it)."""
    return bearer(user_token("alice"))


async def test_secret_ownership_lets_the_user_link(serve_definitions: ServeDefinitions) -> None:
    async with serve_definitions(ACME_YAML, auth=AUTH) as gw:
        gw.upstream.get(f"{ACME}/v1/members/1001/balance").mock(return_value=acme_ok())
        linked = await gw.client.put(
            "/users/alice/accounts/acme",
            json={"member_id": "1001", "member_pin": PIN},
            headers=alice(),
        )
        assert linked.status_code == 201, linked.text


async def test_trusted_link_needs_a_service_that_vouches(
    serve_definitions: ServeDefinitions,
) -> None:
    async with serve_definitions(SESSION_YAML, auth=AUTH) as gw:
        refused = await gw.client.put(
            "/users/alice/accounts/acme_session", json={"member_id": "m-1"}, headers=alice()
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "ownership_proof_required"
        vouched = await gw.client.put(
            "/users/alice/accounts/acme_session",
            json={"member_id": "m-1"},
            headers={"x-api-key": TRUSTED_KEY},
        )
        assert vouched.status_code == 201, vouched.text
        assert not gw.upstream.calls


@pytest.mark.parametrize(
    ("token_for", "status"),
    [(ALICE_GAFAPAY.upper(), 201), ("0b0b", 422), (None, 403)],
    ids=["own-token", "another-accounts-token", "ids-only"],
)
async def test_user_token_ownership_from_a_definition(
    serve_definitions: ServeDefinitions, token_for: str | None, status: int
) -> None:
    account = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
    if token_for is not None:
        account["token"] = customer_token(token_for)
    settings = {
        "gafapay_declared": {"base_url": GAFAPAY, "company_id": COMPANY_ID, "token": "gw-token"}
    }
    async with serve_definitions(SHIPPED_GAFAPAY, auth=AUTH, providers=settings) as gw:
        gw.upstream.get(url__startswith=f"{GAFAPAY}/gafapay/").mock(return_value=gafapay_ok())
        linked = await gw.client.put(
            "/users/alice/accounts/gafapay_declared", json=account, headers=alice()
        )
        assert linked.status_code == status, linked.text
        if status == 201:
            answer = await gw.client.get("/users/alice/points/gafapay_declared", headers=alice())
            assert answer.json()["points"] == "250.0"
            sent = gw.upstream.calls.last.request.headers["authorization"]
            assert sent == f"Token {account['token']}"  # the user's own token, not the gateway's

"""A provider's error text that echoes a secret reaches no answer and no log line.

Both providers pass their upstream messages on in `detail`; a provider may quote back what it
was sent: the user's password, the account's session token, the gateway's own credentials.
Linked accounts (read by a `points:read` service that never saw the password) and one-shot
queries (the caller's own credentials) go through the same one place that masks them.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_PASSWORD,
    BENEPIA_URL,
    CURRENCY,
    GAFAPAY_TOKEN,
    GAFAPAY_URL,
    IMP_SECRET,
    TOKEN_URL,
    gafapay_ok,
    token_ok,
)
from tests.security.conftest import (
    ServeGateway,
    api_key,
    assert_not_in_logs,
    bearer,
    key_with,
    user_token,
)

MASK = "[REDACTED]"
# A one-shot password with characters that JSON and URL encoding both change.
ONE_SHOT_PASSWORD = 'pw "quoted" / 비밀+번호 1'


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# A GafaPay customer session token of alice's GafaPay account (the provider signs it; the
# gateway never checks the signature).
CUSTOMER_TOKEN = (
    f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}."
    f"{_b64({'sub': ALICE_GAFAPAY, 'roles': ['ROLE_CUSTOMER']})}.c2lnbmF0dXJlLW9mLWdhZmFwYXk"
)


def forms(secret: str) -> set[str]:
    """`secret` as sent, JSON-escaped (both ways) and URL-encoded."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }


def assert_nowhere(response: httpx.Response, *secrets: str) -> None:
    """No form of any secret in the answer's bytes, its headers, or its decoded `detail`s."""
    decoded = json.dumps(response.json(), ensure_ascii=False)
    for secret in secrets:
        for form in forms(secret):
            assert form not in response.text, form
            assert form not in decoded, form
            assert all(form not in v for v in response.headers.values())


def iamport_rejects_echoing(request: httpx.Request) -> httpx.Response:
    """iamport code 1, its message quoting the password it was sent, in three forms."""
    password = json.loads(request.content)["benepia_password"]
    message = (
        f"비밀번호 {password} 가 일치하지 않습니다; request={json.dumps({'pw': password})}; "
        f"url=?benepia_password={quote(password, safe='')}; imp_secret={IMP_SECRET}"
    )
    return httpx.Response(200, json={"code": 1, "message": message, "response": None})


def gafapay_rejects_echoing(request: httpx.Request) -> httpx.Response:
    """GafaPay success 0, its errors quoting the token it was sent and the gateway's token."""
    sent = request.headers["authorization"].removeprefix("Token ")
    errors = [f"token {sent} is not allowed", f"company token {GAFAPAY_TOKEN} mismatch"]
    return httpx.Response(200, json={"success": 0, "error": errors})


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_linked_benepia_rejection_echoing_the_password_is_masked(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(side_effect=iamport_rejects_echoing)
        reader = api_key(key_with("points:read"))
        one = await gw.client.get("/users/alice/points/benepia", headers=reader)
        merged = await gw.client.get("/users/alice/points?providers=benepia", headers=reader)

    assert one.status_code == 422, one.text
    assert one.json()["code"] == "provider_rejected"
    assert MASK in one.json()["detail"]
    assert "일치하지 않습니다" in one.json()["detail"], "the rest of the message is passed on"
    assert merged.json()["code"] == "provider_rejected"
    for response in (one, merged):
        assert_nowhere(response, BENEPIA_PASSWORD, IMP_SECRET)
    assert_not_in_logs(logs, *forms(BENEPIA_PASSWORD), IMP_SECRET)


async def test_one_shot_benepia_rejection_echoing_the_password_is_masked(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(side_effect=iamport_rejects_echoing)
        response = await gw.client.post(
            "/users/alice/points/benepia",
            json={"benepia_user": "alice.kim", "benepia_password": ONE_SHOT_PASSWORD},
            headers=bearer(user_token("alice")),
        )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "provider_rejected"
    assert response.json()["detail"].count(MASK) == 4
    assert_nowhere(response, ONE_SHOT_PASSWORD, IMP_SECRET)
    assert_not_in_logs(logs, *forms(ONE_SHOT_PASSWORD), IMP_SECRET)


async def test_linked_gafapay_rejection_echoing_the_settings_token_is_masked(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.get(GAFAPAY_URL).mock(side_effect=gafapay_rejects_echoing)
        reader = api_key(key_with("points:read"))
        one = await gw.client.get("/users/alice/points/gafapay", headers=reader)
        merged = await gw.client.get("/users/alice/points?providers=gafapay", headers=reader)

    assert one.status_code == 422, one.text
    assert one.json()["code"] == "provider_rejected"
    assert one.json()["detail"] == f"token {MASK} is not allowed; company token {MASK} mismatch"
    for response in (one, merged):
        assert_nowhere(response, GAFAPAY_TOKEN)
    assert_not_in_logs(logs, GAFAPAY_TOKEN)


async def test_one_shot_gafapay_rejection_echoing_both_tokens_is_masked(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    async with serve_gateway() as gw:
        gw.upstream.get(GAFAPAY_URL).mock(side_effect=gafapay_rejects_echoing)
        response = await gw.client.post(
            "/users/alice/points/gafapay",
            json={
                "gafapay_user_id": ALICE_GAFAPAY,
                "currency_id": CURRENCY,
                "token": CUSTOMER_TOKEN,
            },
            headers=bearer(user_token("alice")),
        )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        f"token {MASK} is not allowed; company token {MASK} mismatch"
    )
    assert_nowhere(response, CUSTOMER_TOKEN, GAFAPAY_TOKEN)
    assert_not_in_logs(logs, CUSTOMER_TOKEN, GAFAPAY_TOKEN)


async def test_an_upstream_error_echoing_a_secret_is_masked_too(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    # Not only refusals: a 5xx's message is passed on the same way.
    answer = {"code": -1, "message": f"PG failed for {BENEPIA_PASSWORD}", "response": None}
    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(return_value=httpx.Response(500, json=answer))
        gw.upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())
        response = await gw.client.get(
            "/users/alice/points", headers=api_key(key_with("points:read"))
        )

    assert response.status_code == 200, response.text
    (failed,) = [b for b in response.json()["balances"] if b["status"] == "error"]
    assert failed["error"]["code"] == "upstream_error"
    assert failed["error"]["detail"] == f"PG failed for {MASK}"
    assert_nowhere(response, BENEPIA_PASSWORD)
    assert_not_in_logs(logs, BENEPIA_PASSWORD)


async def test_an_unexpected_failure_quoting_a_secret_is_logged_masked(
    serve_gateway: ServeGateway, logs: pytest.LogCaptureFixture
) -> None:
    # Logged with its traceback (a bug to look into), so its message is masked as well.
    def broken(request: httpx.Request) -> httpx.Response:
        password = json.loads(request.content)["benepia_password"]
        raise RuntimeError(f"could not parse {password}")

    async with serve_gateway() as gw:
        gw.upstream.post(TOKEN_URL).mock(return_value=token_ok())
        gw.upstream.post(BENEPIA_URL).mock(side_effect=broken)
        response = await gw.client.get(
            "/users/alice/points/benepia", headers=api_key(key_with("points:read"))
        )

    assert response.status_code == 500, response.text
    assert f"could not parse {MASK}" in logs.text, "the failure is still logged"
    assert_nowhere(response, BENEPIA_PASSWORD)
    assert_not_in_logs(logs, BENEPIA_PASSWORD)

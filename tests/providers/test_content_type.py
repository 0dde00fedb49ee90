"""A 200 whose declared content type is not JSON breaks the contract, whatever its body."""

from __future__ import annotations

import httpx
import pytest
import respx

from tests.conftest import BENEPIA_URL, GAFAPAY_URL, TOKEN_URL, token_ok

BENEPIA_BODY = b'{"code":0,"message":"","response":{"point":12000}}'
GAFAPAY_BODY = (
    b'{"success":1,"error":[],"data":{"user_points":{"user_id":"fb8f09210e0f46b7b4262d77f5b6c273",'
    b'"points":250.0,"currency_id":"1f1519903ed240578f071aa45cb479f2"}}}'
)


@pytest.mark.parametrize("content_type", ["text/html", "text/plain; charset=utf-8", "image/png"])
async def test_benepia_200_that_is_not_json(
    client: httpx.AsyncClient, upstream: respx.MockRouter, content_type: str
) -> None:
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(
        return_value=httpx.Response(
            200, content=BENEPIA_BODY, headers={"content-type": content_type}
        )
    )
    r = await client.get("/users/alice/points/benepia")
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "upstream_invalid_response"


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json;charset=UTF-8", "application/problem+json"],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, upstream: respx.MockRouter, content_type: str
) -> None:
    upstream.get(GAFAPAY_URL).mock(
        return_value=httpx.Response(
            200, content=GAFAPAY_BODY, headers={"content-type": content_type}
        )
    )
    r = await client.get("/users/alice/points/gafapay")
    assert r.status_code == 200, r.text
    assert r.json()["points"] == "250.0"


async def test_gafapay_200_html_and_get_token_200_html(
    client: httpx.AsyncClient, upstream: respx.MockRouter
) -> None:
    upstream.get(GAFAPAY_URL).mock(
        return_value=httpx.Response(
            200, content=GAFAPAY_BODY, headers={"content-type": "text/html"}
        )
    )
    upstream.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, content=b"{}", headers={"content-type": "text/html"})
    )
    body = (await client.get("/users/alice/points")).json()
    codes = {b["provider"]: b["error"]["code"] for b in body["balances"]}
    assert codes == {"benepia": "upstream_invalid_response", "gafapay": "upstream_invalid_response"}

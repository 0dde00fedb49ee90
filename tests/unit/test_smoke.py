from __future__ import annotations

import httpx
import respx

from tests.conftest import GAFAPAY, IAMPORT, benepia_ok, gafapay_ok, token_ok


async def test_alice_merged(client: httpx.AsyncClient, upstream: respx.MockRouter) -> None:
    upstream.post(f"{IAMPORT}/users/getToken").mock(return_value=token_ok())
    upstream.post(f"{IAMPORT}/benepia/point").mock(return_value=benepia_ok())
    upstream.get(f"{GAFAPAY}/gafapay/v3/reward_promotion/user_points").mock(return_value=gafapay_ok())
    r = await client.get("/users/alice/points")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["points"] for b in body["balances"]] == ["12000", "250.0"]

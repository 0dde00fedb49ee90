"""The outbound client: requests built without build_request, and no cookies between users."""

from __future__ import annotations

import httpx

from app.outbound.client import RequestMaker, build_client
from app.settings import OutboundSettings

BASE = "https://provider.example:8443"


async def test_a_providers_cookie_is_never_sent_with_a_later_request() -> None:
    seen: list[str | None] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=user-a; Path=/"})

    client = build_client(
        BASE, 3.0, settings=OutboundSettings(), transport=httpx.MockTransport(provider)
    )
    maker = RequestMaker(client)
    async with client:
        url = maker.url("/points")
        for user in ("user-a", "user-b"):
            await client.send(maker.request("GET", url, headers={}, params={"user": user}))

    assert seen == [None, None]
    assert not client.cookies


async def test_requests_match_what_build_request_would_send() -> None:
    client = build_client(BASE, 3.0, settings=OutboundSettings())
    maker = RequestMaker(client)
    async with client:
        ours = maker.request(
            "GET", maker.url("/a/b"), headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        )
        theirs = client.build_request(
            "GET", "/a/b", headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        )
        posted = maker.request("POST", maker.url("/c"), headers={}, json_body={"k": "값"})
        posted_theirs = client.build_request("POST", "/c", json={"k": "값"})

    assert ours.url == theirs.url
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.extensions == theirs.extensions
    assert posted.url == posted_theirs.url
    assert posted.read() == posted_theirs.read()
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["content-length"] == posted_theirs.headers["content-length"]

"""The outbound client: requests built without build_request, and no cookies between users."""

from __future__ import annotations

import httpx

from app.outbound.client import ProviderClient, RequestMaker, build_client
from app.outbound.transport import Reply, declared_over
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
    assert isinstance(client, ProviderClient)
    maker = RequestMaker(client)
    async with client:
        url = maker.url("/points")
        for user in ("user-a", "user-b"):
            request = maker.request("GET", url, headers={}, params={"user": user})
            await client.fetch(request, max_bytes=1024)  # the adapters' path
            await client.send(request.to_httpx(client.timeout))  # and httpx's own

    assert seen == [None] * 4
    assert not client.cookies


async def test_requests_match_what_build_request_would_send() -> None:
    client = build_client(BASE, 3.0, settings=OutboundSettings())
    maker = RequestMaker(client)
    async with client:
        ours = maker.request(
            "GET", maker.url("/a/b"), headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        ).to_httpx(client.timeout)
        theirs = client.build_request(
            "GET", "/a/b", headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        )
        plain = maker.request("POST", maker.url("/c"), headers={}, json_body={"k": "값"})
        posted = plain.to_httpx(client.timeout)
        posted_theirs = client.build_request("POST", "/c", json={"k": "값"})
        overridden = maker.request("GET", maker.url("/d"), headers={"User-Agent": "other"})

    assert ours.url == theirs.url
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.extensions == theirs.extensions
    assert posted.url == posted_theirs.url
    assert posted.read() == posted_theirs.read()
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["content-length"] == posted_theirs.headers["content-length"]
    # What aiohttp is handed: the same URL and headers (it adds Host and Content-Length itself).
    assert plain.url == str(posted_theirs.url)
    assert plain.content == posted_theirs.read()
    added_by_the_wire = ("host", "content-length")
    assert [(k.lower(), v) for k, v in plain.headers] == [
        h for h in posted_theirs.headers.multi_items() if h[0] not in added_by_the_wire
    ]
    assert [v for k, v in overridden.headers if k.lower() == "user-agent"] == ["other"]


def test_a_request_shows_no_header_body_or_query_in_its_repr() -> None:
    client = build_client(BASE, 3.0, settings=OutboundSettings())
    request = RequestMaker(client).request(
        "POST",
        f"{BASE}/points",
        headers={"authorization": "Bearer tok-secret-123"},
        params={"user_id": "u-42"},
        json_body={"benepia_password": "pw-secret-456"},
    )
    shown = repr(request) + str(request)
    assert shown == f"<OutboundRequest POST {BASE}/points>" * 2
    for secret in ("tok-secret-123", "pw-secret-456", "u-42"):
        assert secret not in shown


def test_an_answer_shows_no_header_or_body_in_its_repr() -> None:
    headers = {"set-cookie": "session=cookie-secret-789"}
    assert repr(Reply(200, headers, b'{"points": 12000}')) == "<Reply 200, 17 bytes>"


def test_only_a_plain_decimal_content_length_can_refuse_a_body() -> None:
    assert declared_over("2048", 1024)
    assert not declared_over("1024", 1024)
    # Garbled or out-of-range lengths say nothing (the count while reading still caps the body);
    # "²" passes str.isdigit() but not int().
    for garbled in ("", "12a", "-5", "²", "1" * 19, " 2048"):
        assert not declared_over(garbled, 1024), garbled

"""The outbound seam's requests: built as httpx would build them, no cookies between users."""

from __future__ import annotations

import httpx

from app import __version__
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import OutboundRequest, Reply, UpstreamConfig, declared_over

BASE = "https://provider.example:8443"


def upstream(transport: httpx.AsyncBaseTransport | None = None) -> HttpxUpstream:
    config = UpstreamConfig(
        provider="acme", base_url=BASE, timeout=3.0, connect_timeout=2.0, max_bytes=1 << 20
    )
    return HttpxUpstream(config, transport=transport or httpx.MockTransport(lambda _: None))  # type: ignore[arg-type]


async def test_a_providers_cookie_is_never_sent_with_a_later_request() -> None:
    seen: list[str | None] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=user-a; Path=/"})

    seam = upstream(httpx.MockTransport(provider))
    url = seam.url("/points")
    for user in ("user-a", "user-b"):
        await seam.send(seam.request("GET", url, headers={}, params={"user": user}))
    assert seen == [None, None]


async def test_requests_match_what_build_request_would_send() -> None:
    seam = upstream()
    headers = {"user-agent": f"points-gateway/{__version__}"}
    async with httpx.AsyncClient(base_url=BASE, headers=headers) as client:
        ours = seam.request(
            "GET", seam.url("/a/b"), headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        )
        theirs = client.build_request(
            "GET", "/a/b", headers={"x-id": "1"}, params={"q": "a b&c", "id": "ff"}
        )
        posted = seam.request("POST", seam.url("/c"), headers={}, json={"k": "값"})
        posted_theirs = client.build_request("POST", "/c", json={"k": "값"})
        overridden = seam.request("GET", seam.url("/d"), headers={"User-Agent": "other"})

    added_by_the_wire = ("host", "content-length")

    def sent(request: httpx.Request) -> list[tuple[str, str]]:
        return [h for h in request.headers.multi_items() if h[0] not in added_by_the_wire]

    assert ours.url == str(theirs.url)
    assert [(k.lower(), v) for k, v in ours.headers] == sent(theirs)
    assert posted.url == str(posted_theirs.url)
    assert posted.content == posted_theirs.read()
    assert [(k.lower(), v) for k, v in posted.headers] == sent(posted_theirs)
    assert [v for k, v in overridden.headers if k.lower() == "user-agent"] == ["other"]


def test_a_request_shows_no_header_body_or_query_in_its_repr() -> None:
    seam = upstream()
    request = seam.request(
        "POST",
        f"{BASE}/points",
        headers={"authorization": "Bearer tok-secret-123"},
        params={"user_id": "u-42"},
        json={"benepia_password": "pw-secret-456"},
    )
    shown = repr(request) + str(request)
    assert shown == f"<OutboundRequest POST {BASE}/points>" * 2
    for secret in ("tok-secret-123", "pw-secret-456", "u-42"):
        assert secret not in shown
    assert isinstance(request, OutboundRequest)


def test_an_answer_shows_no_header_or_body_in_its_repr() -> None:
    headers = {"set-cookie": "session=cookie-secret-789"}
    reply = Reply("acme", 200, headers, b'{"points": 12000}')
    assert repr(reply) == "<Reply acme 200, 17 bytes>"


def test_only_a_plain_decimal_content_length_can_refuse_a_body() -> None:
    assert declared_over("2048", 1024)
    assert not declared_over("1024", 1024)
    # Garbled or out-of-range lengths say nothing (the count while reading still caps the body);
    # "²" passes str.isdigit() but not int().
    for garbled in ("", "12a", "-5", "²", "1" * 19, " 2048"):
        assert not declared_over(garbled, 1024), garbled

"""Property-based hostility (issue 5): no input, from a caller or an upstream, makes a 500.

Two families of properties, both driven by hypothesis with `derandomize=True` (CI replays the
same examples every run):

* requests at the app: arbitrary methods, paths, queries, headers and bodies, once with auth
  disabled (so garbage reaches routing and validation) and once with auth required (so the
  authentication layer sees it). Every answer is below 600 and not 500, carries a well-formed
  X-Request-ID, and every error is an RFC 9457 problem whose `status` is the HTTP status.
* upstream answers at the adapters: arbitrary statuses, headers and bodies (raw bytes, any JSON,
  envelope-shaped JSON with randomised member types) from Benepia's point call, iamport's
  getToken and GafaPay. The single-provider route answers only a status the DESIGN table allows,
  as problem+json when it is an error; the merged route keeps serving the healthy provider.

tests/unit/test_no_500_from_upstream.py holds the hand-written table of hostile upstream answers;
this file generates instead of enumerating. Each example gets a fresh app (its own event loop via
`asyncio.run`, its own store, token cache and breakers), so examples never leak state into each
other and a shrunk failure replays on its own.

Two 500s these properties found (a lone surrogate in a Benepia credential, a non-ASCII GafaPay
token) are pinned as plain regression tests at the end.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import respx
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from app.main import create_app
from app.security.api_keys import hash_key
from app.settings import Settings
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_URL,
    CURRENCY,
    GAFAPAY_URL,
    PROBLEM,
    TOKEN_URL,
    benepia_ok,
    examples,
    gafapay_ok,
    make_settings,
    make_store,
    serve_in_process,
    token_ok,
)

REQUEST_EXAMPLES = examples(150)
UPSTREAM_EXAMPLES = examples(200)

COMMON_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
}

HS_SECRET = "property-tests-hs256-secret-0000000000000"
SERVICE_KEY = "pgk-property-service-key-0001"
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")

PLAIN_SETTINGS = make_settings()
AUTH_SETTINGS = make_settings(
    auth={
        "mode": "required",
        "jwt_secret": HS_SECRET,
        "api_keys": [
            {"name": "svc", "sha256": hash_key(SERVICE_KEY), "scopes": ["points:read"]},
        ],
    }
)


# --- running one exchange against a fresh app -------------------------------------------------

Answer = Callable[[httpx.Request], httpx.Response]


def healthy_upstream() -> dict[str, Answer]:
    """Every upstream call answers a fixed valid response."""
    return {
        "token": lambda request: token_ok(),
        "benepia": lambda request: benepia_ok(),
        "gafapay": lambda request: gafapay_ok(user_id=request.url.params.get("user_id", "0")),
    }


@dataclass(frozen=True)
class Call:
    """One request to send to the gateway."""

    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    content: bytes | None = None
    route: str = "any path"
    streamed: bool = False  # sent chunked, without Content-Length


async def chunks_of(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), 16_384):
        yield content[start : start + 16_384]


def run_calls(
    app_settings: Settings, calls: Iterable[Call], answers: dict[str, Answer] | None = None
) -> list[httpx.Response]:
    """Serve a fresh app (respx upstreams) in its own event loop and send `calls` in order."""
    answer = {**healthy_upstream(), **(answers or {})}

    async def go() -> list[httpx.Response]:
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        router.post(TOKEN_URL).mock(side_effect=answer["token"])
        router.post(BENEPIA_URL).mock(side_effect=answer["benepia"])
        router.get(GAFAPAY_URL).mock(side_effect=answer["gafapay"])
        app = create_app(
            app_settings,
            transport=httpx.MockTransport(router.async_handler),
            store=make_store(),
        )
        out: list[httpx.Response] = []
        async with serve_in_process(app) as client:
            for call in calls:
                content: bytes | AsyncIterator[bytes] | None = call.content
                if call.streamed and call.content is not None:
                    content = chunks_of(call.content)
                response = await client.request(
                    call.method, call.url, headers=call.headers, content=content
                )
                await response.aread()
                out.append(response)
        return out

    return asyncio.run(go())


def assert_gateway_answer(response: httpx.Response, method: str) -> None:
    """The invariants every gateway answer keeps, whatever was asked."""
    status = response.status_code
    assert status != 500, response.text[:1000]
    assert 100 <= status < 600
    # Always an id, and never an echo of a malformed one (it would reach logs and upstreams).
    assert REQUEST_ID.fullmatch(response.headers.get("x-request-id", "")), response.headers
    if status < 400:
        return
    assert response.headers.get("content-type", "").startswith(PROBLEM), (
        status,
        response.headers,
        response.text[:300],
    )
    if method == "HEAD":
        # No body on HEAD; the problem media type is still announced.
        assert response.content == b""
        return
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), str), body
    assert isinstance(body.get("status"), int), body
    assert not isinstance(body["status"], bool)
    assert body["status"] == status, body
    assert body.get("type") == f"urn:points-gateway:problem:{body['code']}", body
    if "request_id" in body:
        assert body["request_id"] == response.headers["x-request-id"]


# --- strategies: JSON values ------------------------------------------------------------------

# Text as a caller's JSON may carry it: any code point, lone surrogates included (JSON "\ud800").
any_text = st.text(st.characters(), max_size=40)
big_ints = st.one_of(
    st.integers(min_value=10**17, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=-(10**17)),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400]),
)
json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    big_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(any_text, children, max_size=5),
    ),
    max_leaves=25,
)


def dumps(value: object, ensure_ascii: bool) -> bytes:
    """JSON text as a sender would write it (NaN and Infinity included: Python writes them)."""
    text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def json_bytes(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    return dumps(draw(values), draw(st.booleans()))


# --- strategies: requests at the app ----------------------------------------------------------

METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD"]
KNOWN_SEGMENTS = [
    "users",
    "points",
    "accounts",
    "providers",
    "healthz",
    "readyz",
    "openapi.json",
    "alice",
    "bob",
    "carol",
    "mallory",
    "benepia",
    "gafapay",
    "..",
    ".",
    "",
    "%",
    "%00",
    "~",
    "a" * 128,
    "a" * 129,
    "a@b.c",
]
ROUTES = [
    ("GET", "/users/{u}/points"),
    ("GET", "/users/{u}/points/{p}"),
    ("POST", "/users/{u}/points/{p}"),
    ("GET", "/users/{u}/accounts"),
    ("PUT", "/users/{u}/accounts/{p}"),
    ("DELETE", "/users/{u}/accounts/{p}"),
    ("GET", "/providers"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
]


def encode_segment(segment: str, dots: bool) -> str:
    """Percent-encode everything (dots too when asked, so `..` can reach the app unresolved)."""
    raw = segment.encode("utf-8", "surrogatepass")
    encoded = quote(raw, safe="")
    return encoded.replace(".", "%2E") if dots else encoded


segments = st.one_of(
    st.sampled_from(KNOWN_SEGMENTS),
    st.text(st.characters(), max_size=30),
    st.text(st.characters(max_codepoint=0x1F), max_size=10),
    st.builds(lambda c, n: c * n, st.sampled_from("a.%/é\x00"), st.integers(1, 3000)),
)


def placeholder(draw: st.DrawFn, known: list[str]) -> str:
    """Mostly a value the app knows (so requests reach the handlers), sometimes garbage."""
    return draw(st.sampled_from(known)) if draw(st.integers(0, 3)) else draw(segments)


@st.composite
def paths(draw: st.DrawFn, template: str | None = None) -> str:
    """A route's template with its placeholders filled, or a path of arbitrary segments."""
    dots = draw(st.booleans())
    if template is not None:
        user = placeholder(draw, ["alice", "bob", "carol", "mallory", "svc"])
        provider = placeholder(draw, ["benepia", "gafapay", "nope"])
        return template.format(u=encode_segment(user, dots), p=encode_segment(provider, dots))
    parts = draw(st.lists(segments, min_size=1, max_size=6))
    return "/" + "/".join(encode_segment(p, dots) for p in parts)


query_values = st.one_of(
    st.sampled_from(
        ["benepia", "gafapay", "benepia,gafapay", ",", "benepia,,gafapay", " ", "x" * 600, "true"]
    ),
    st.text(max_size=40),
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(["providers", "verify", "user_id", ""]), any_text),
                query_values,
            ),
            max_size=4,
        )
    )
    if not pairs:
        return ""
    return "?" + "&".join(
        f"{encode_segment(k, False)}={encode_segment(v, False)}" for k, v in pairs
    )


# Header text httpx will send: latin-1, no CR or LF.
header_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=60)
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment_of(value: object) -> str:
    return b64url(dumps(value, True))


claim_values = st.one_of(
    json_scalars,
    st.sampled_from(["alice", "bob", "", "points:read", "points:read accounts:write"]),
    st.integers(min_value=int(time.time()) - 10**6, max_value=int(time.time()) + 10**6),
)


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": draw(st.sampled_from(["alice", "bob", "svc"]))
        if draw(st.integers(0, 2))
        else draw(claim_values),
        "exp": int(time.time()) + 3600 if draw(st.integers(0, 2)) else draw(claim_values),
    }
    for name, good in (
        ("gateway_service", True),
        ("scope", "points:read accounts:read accounts:write"),
        ("nbf", int(time.time()) - 60),
        ("iat", int(time.time())),
        ("iss", "https://idp.test/"),
        ("aud", "points-gateway"),
    ):
        if draw(st.integers(0, 2)) == 0:
            claims[name] = good if draw(st.booleans()) else draw(claim_values)
    for _ in range(draw(st.integers(0, 2))):
        claims[draw(any_text)] = draw(json_values)
    return claims


@st.composite
def jwt_like(draw: st.DrawFn) -> str:
    """Dotted base64: random bytes, forged headers and claims, or a properly signed HS256 JWT."""
    kind = draw(st.sampled_from(["random", "forged", "signed", "signed"]))
    if kind == "random":
        parts = draw(st.lists(st.binary(max_size=60), min_size=1, max_size=5))
        return ".".join(b64url(p) for p in parts)
    claims = draw(claim_sets())
    # Signed by hand: PyJWT refuses to encode some claim types (a non-string `iss`).
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kind == "forged":
        header["alg"] = draw(
            st.one_of(st.sampled_from(["HS256", "none", "RS256", "ES256", "HS512"]), json_scalars)
        )
        header["typ"] = draw(st.one_of(st.just("JWT"), json_scalars))
        if draw(st.booleans()):
            header["kid"] = draw(json_values)
    signing_input = f"{segment_of(header)}.{segment_of(claims)}"
    key = (
        HS_SECRET.encode()
        if kind == "signed"
        else draw(st.sampled_from([HS_SECRET.encode(), b"wrong"]))
    )
    signature = b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    if kind == "forged":
        signature = draw(st.one_of(st.just(signature), st.just(""), st.text("A-_=.", max_size=8)))
    return f"{signing_input}.{signature}"


authorization = st.one_of(
    header_text,
    st.builds(lambda t: f"Bearer {t}", header_text),
    st.builds(lambda t: f"Bearer {t}", jwt_like()),
    st.builds(lambda t: f"Bearer {t}", jwt_like()),
    st.builds(
        lambda s, t: f"{s} {t}", st.sampled_from(["bearer", "BEARER", "Basic", "Token"]), jwt_like()
    ),
    st.sampled_from(["Bearer", "Bearer ", "Bearer  x", " Bearer x"]),
)
known_headers: dict[str, st.SearchStrategy[str]] = {
    "authorization": authorization,
    "x-api-key": st.one_of(st.just(SERVICE_KEY), header_text),
    "x-request-id": st.one_of(st.just("req-1"), st.just("a" * 129), header_text),
    "request-timeout": st.one_of(
        st.sampled_from(["0", "-1", "nan", "inf", "1e400", "1_0", "0x10", "", "2.5", "99999"]),
        st.floats().map(repr),
        header_text,
    ),
    "cache-control": st.one_of(
        st.sampled_from(["no-cache", "max-age=0", "no-store, no-cache", ",,,"]), header_text
    ),
    "content-type": st.one_of(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-16",
                "application/problem+json",
                "application/vnd.x+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/",
                "json",
            ]
        ),
        header_text,
    ),
    "content-length": st.one_of(
        st.sampled_from(["0", "1", "-1", "99999999999999999999", "²", "abc", "1, 1"]),
        header_text,
    ),
}


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, values in known_headers.items():
        # The credentials more often than the rest, so the auth layer sees plenty of them.
        if draw(st.integers(0, 3)) < (2 if name in ("authorization", "x-api-key") else 1):
            out.append((name.encode(), draw(values).encode("latin-1")))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.text(TCHAR, min_size=1, max_size=20))
        out.append((name.encode(), draw(header_text).encode("latin-1")))
    if draw(st.integers(0, 20)) == 0:
        out.append((b"x-padding", b"p" * draw(st.integers(1000, 20_000))))
    return out


ACCOUNT_KEYS = ["benepia_user", "benepia_password", "gafapay_user_id", "currency_id", "token"]
VALID_ACCOUNTS: list[dict[str, Any]] = [
    {"benepia_user": "alice.kim", "benepia_password": "pw-1"},
    {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY},
    {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY, "token": "t.o.k"},
]
account_values = st.one_of(
    json_values,
    st.sampled_from([ALICE_GAFAPAY, CURRENCY, "alice.kim", "0" * 33, "x" * 300, "", " "]),
    st.text(st.characters(), min_size=1, max_size=20),
    # Characters that break encoders: lone surrogates, non-ASCII, NUL, CR/LF, U+2028, BOM, emoji.
    st.text(st.sampled_from("a\ud800\udfffé一\x00\r\n\t \u2028\ufeff😀"), min_size=1, max_size=8),
)


@st.composite
def account_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A valid account with members replaced, dropped or added; or account keys, random values."""
    if draw(st.booleans()):
        body = dict(draw(st.sampled_from(VALID_ACCOUNTS)))
        for key in draw(st.lists(st.sampled_from(ACCOUNT_KEYS), unique=True, max_size=2)):
            if draw(st.integers(0, 3)):
                body[key] = draw(account_values)
            else:
                body.pop(key, None)
    else:
        keys = draw(st.lists(st.sampled_from(ACCOUNT_KEYS), unique=True))
        body = {key: draw(account_values) for key in keys}
    if draw(st.integers(0, 3)) == 0:
        body[draw(any_text)] = draw(json_values)
    return body


PROVIDER_ACCOUNT_KEYS = {
    "benepia": ["benepia_user", "benepia_password"],
    "gafapay": ["gafapay_user_id", "currency_id", "token"],
}


@st.composite
def accounts_for(draw: st.DrawFn, provider: str) -> dict[str, Any]:
    """The provider's valid account with its own members retyped (rarely dropped or added to)."""
    body = dict(
        draw(st.sampled_from(VALID_ACCOUNTS[:1] if provider == "benepia" else VALID_ACCOUNTS[1:]))
    )
    for key in draw(
        st.lists(st.sampled_from(PROVIDER_ACCOUNT_KEYS[provider]), unique=True, max_size=2)
    ):
        if draw(st.integers(0, 7)):
            body[key] = draw(account_values)
        else:
            body.pop(key, None)
    if draw(st.integers(0, 7)) == 0:
        body[draw(any_text)] = draw(json_values)
    return body


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 19))
    if kind < 4:
        return None
    if kind < 7:
        return draw(st.binary(max_size=300))
    if kind < 10:
        return draw(json_bytes(json_values))
    if kind < 18:
        return draw(json_bytes(account_shaped()))
    if kind == 18:
        depth = draw(st.integers(100, 10_000))
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"x" * draw(st.integers(60_000, 70_000))


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """Mostly a real route (often with its own method), sometimes any method at any path."""
    if draw(st.integers(0, 9)) < 7:
        method, template = draw(st.sampled_from(ROUTES))
        if draw(st.integers(0, 4)) == 0:
            method = draw(st.sampled_from(METHODS))
        path = draw(paths(template))
    else:
        template = "any path"
        method, path = draw(st.sampled_from(METHODS)), draw(paths())
    query = draw(queries())
    body = draw(bodies())
    streamed = body is not None and draw(st.integers(0, 4)) == 0
    return Call(method, path + query, draw(header_lists()), body, template, streamed)


def check_calls(app_settings: Settings, call: Call) -> None:
    note(f"{call.method} {call.url[:300]} headers={call.headers!r:.600} body={call.content!r:.300}")
    note(f"streamed={call.streamed} ({len(call.content or b'')} bytes)")
    (response,) = run_calls(app_settings, [call])
    event(f"{call.method} {call.route} -> {response.status_code}")
    if response.status_code >= 400 and call.method != "HEAD":
        event(f"code {response.json().get('code')}")
    assert_gateway_answer(response, call.method)


@settings(max_examples=REQUEST_EXAMPLES, **COMMON_SETTINGS)
@given(call=calls())
def test_any_request_with_auth_disabled(call: Call) -> None:
    check_calls(PLAIN_SETTINGS, call)


@settings(max_examples=REQUEST_EXAMPLES, **COMMON_SETTINGS)
@given(call=calls())
def test_any_request_with_auth_required(call: Call) -> None:
    check_calls(AUTH_SETTINGS, call)


ONE_SHOT_FLOWS = {
    "query once": ["POST /users/alice/points/{p}"],
    "link and verify": ["PUT /users/alice/accounts/{p}?verify=true"],
    "link, then read": [
        "PUT /users/alice/accounts/{p}",
        "GET /users/alice/points/{p}",
        "GET /users/alice/points",
    ],
}


@settings(max_examples=REQUEST_EXAMPLES, **COMMON_SETTINGS)
@given(
    flow=st.sampled_from(sorted(ONE_SHOT_FLOWS)),
    provider=st.sampled_from(["benepia", "gafapay"]),
    data=st.data(),
)
def test_any_account_body_reaching_an_adapter(
    flow: str, provider: str, data: st.DataObject
) -> None:
    """Account bodies the routes accept go all the way to the adapter's upstream request."""
    body = data.draw(accounts_for(provider))
    content = dumps(body, ensure_ascii=True)
    headers = [(b"content-type", b"application/json")]
    note(f"{flow} {provider} {content!r:.500}")
    requests = []
    for step in ONE_SHOT_FLOWS[flow]:
        method, url = step.format(p=provider).split(" ")
        requests.append(Call(method, url, headers, content if method != "GET" else None))
    responses = run_calls(PLAIN_SETTINGS, requests)
    for response, sent in zip(responses, requests, strict=True):
        event(f"{flow}: {sent.method} -> {response.status_code}")
        assert_gateway_answer(response, sent.method)
    if flow == "link, then read" and responses[0].status_code < 300:
        merged = responses[2].json()
        for entry in merged.get("balances", []):
            assert (entry.get("error") or {}).get("code") != "internal_error", entry


def test_options_and_head_answer_problem_405() -> None:
    """What the properties allow for OPTIONS and HEAD, pinned: 405 problem+json (no CORS here)."""
    options, head = run_calls(
        PLAIN_SETTINGS,
        [Call("OPTIONS", "/users/alice/points", []), Call("HEAD", "/users/alice/points", [])],
    )
    assert options.status_code == head.status_code == 405
    assert options.headers["content-type"] == head.headers["content-type"] == PROBLEM
    assert options.json()["code"] == "method_not_allowed"
    assert head.content == b""


# --- strategies: upstream answers -------------------------------------------------------------

UPSTREAM_STATUSES = [200] * 6 + [201, 204, 301, 400, 401, 403, 404, 418, 429]
UPSTREAM_STATUSES += [500, 502, 503, 504, 599]
HTTP_DATES = [
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 01 Jan 2100 00:00:00 GMT",
    "Mon, 01 Jan 2026 00:00:00 +99999999999999",
    "Sun, 06 Nov 1994 08:49:37",
]
ENVELOPE_KEYS = [
    "code",
    "message",
    "response",
    "point",
    "success",
    "error",
    "data",
    "user_points",
    "points",
    "user_id",
    "currency_id",
]
field_values: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-5, max_value=5),
    st.integers(min_value=-(2**53), max_value=2**53),
    big_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1e3, 1e-9, 1e308, 12000.0]),
    st.text(st.characters(), max_size=20),
    st.sampled_from(["0", "1", "", ALICE_GAFAPAY, "00" + ALICE_GAFAPAY.upper(), CURRENCY]),
    st.booleans(),
    st.none(),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_scalars, max_size=3),
)


def maybe(good: object, draw: st.DrawFn) -> Any:
    """The well-formed value two times in three, a random one otherwise."""
    return good if draw(st.integers(0, 2)) else draw(field_values)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """JSON shaped like an upstream answer (iamport's or GafaPay's), member types at random."""
    now = 1_700_000_000
    token_response = {
        "access_token": maybe("tok-1", draw),
        "now": maybe(now, draw),
        "expired_at": maybe(now + 1800, draw),
    }
    user_points = {
        "id": maybe("fd5fd822caa8418d9c0bbbbfc54e0b21", draw),
        "points": maybe(draw(st.sampled_from([Decimal("250.5"), 0, 12000, -3])), draw),
        "user_id": maybe(
            draw(st.sampled_from([ALICE_GAFAPAY, "00" + ALICE_GAFAPAY.upper()])), draw
        ),
        "currency_id": maybe(CURRENCY, draw),
    }
    shapes: dict[str, dict[str, Any]] = {
        "iamport": {
            "code": maybe(draw(st.sampled_from([0, 0, 1, -1])), draw),
            "message": maybe(draw(st.sampled_from(["", None, "refused"])), draw),
            "response": maybe(
                draw(st.sampled_from([{"point": maybe(12000, draw)}, token_response])), draw
            ),
        },
        "gafapay": {
            "success": maybe(draw(st.sampled_from([1, 1, 0])), draw),
            "error": maybe(draw(st.sampled_from([[], ["refused"], None])), draw),
            "data": maybe({"user_points": maybe(user_points, draw)}, draw),
        },
    }
    shape = draw(st.sampled_from(["iamport", "gafapay", "mixed"]))
    if shape == "mixed":
        body = {**shapes["iamport"], **shapes["gafapay"], **user_points, "point": 1}
        keys = draw(st.lists(st.sampled_from(sorted(body)), unique=True, min_size=1))
        return {key: body[key] for key in keys}
    body = shapes[shape]
    for key in draw(st.lists(st.sampled_from(sorted(body)), unique=True, max_size=1)):
        del body[key]
    for key in draw(st.lists(st.sampled_from(ENVELOPE_KEYS), unique=True, max_size=2)):
        body[key] = draw(field_values)
    return body


def dumps_decimal(value: object, ensure_ascii: bool) -> bytes:
    def default(obj: object) -> object:
        if isinstance(obj, Decimal):
            return float(obj)
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True, default=default)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def upstream_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "envelope"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    value = draw(json_values) if kind == "json" else draw(envelopes())
    return dumps_decimal(value, draw(st.booleans()))


upstream_header_values: dict[str, st.SearchStrategy[str]] = {
    "content-type": st.one_of(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "application/json; charset=utf-16",
                "application/json; charset=bogus",
                "text/html",
                "application/octet-stream",
                "",
            ]
        ),
        header_text,
    ),
    "content-encoding": st.one_of(
        st.sampled_from(["gzip", "deflate", "br", "zstd", "identity", "gzip, gzip", "x-nope", ""]),
        header_text,
    ),
    "content-length": st.one_of(
        st.integers(min_value=0, max_value=10**25).map(str),
        st.sampled_from(["-1", "abc", "²", "", "1, 2", "9" * 5000]),
        header_text,
    ),
    "retry-after": st.one_of(
        st.integers(min_value=-(10**6), max_value=10**20).map(str),
        st.sampled_from([*HTTP_DATES, "1.5", "soon", "", "²", "9" * 5000]),
        header_text,
    ),
}


@dataclass(frozen=True)
class UpstreamAnswer:
    """One generated upstream answer; `response()` builds a fresh, unread httpx.Response."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    fault: str | None = None

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.fault == "reset-mid-body":
            stream: httpx.AsyncByteStream = FailingStream(self.body)
        elif self.fault is not None:
            raise TRANSPORT_FAULTS[self.fault](f"injected {self.fault}", request=request)
        else:
            # A prebuilt ByteStream is neither read nor decoded before the gateway reads it.
            stream = httpx.ByteStream(self.body)
        return httpx.Response(self.status, headers=self.headers, stream=stream)


class FailingStream(httpx.AsyncByteStream):
    """Half the body, then the connection drops."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body[: len(self._body) // 2]
        raise httpx.ReadError("connection reset mid-body")


TRANSPORT_FAULTS: dict[str, type[httpx.RequestError]] = {
    "connect-error": httpx.ConnectError,
    "connect-timeout": httpx.ConnectTimeout,
    "read-timeout": httpx.ReadTimeout,
    "pool-timeout": httpx.PoolTimeout,
    "remote-protocol-error": httpx.RemoteProtocolError,
    "read-error": httpx.ReadError,
    "unsupported-protocol": httpx.UnsupportedProtocol,
}


def valid_bodies() -> dict[str, Any]:
    """What each upstream answers when all is well."""
    now = 1_700_000_000
    user_points = {
        "id": "fd5fd822caa8418d9c0bbbbfc54e0b21",
        "user_id": ALICE_GAFAPAY,
        "user_type": 2,
        "points": Decimal("250.5"),
        "currency_id": CURRENCY,
    }
    return {
        "benepia": {"code": 0, "message": "", "response": {"point": 12000}},
        "token": {
            "code": 0,
            "message": None,
            "response": {"access_token": "tok-1", "now": now, "expired_at": now + 1800},
        },
        "gafapay": {"success": 1, "error": [], "data": {"user_points": user_points}},
    }


def member_paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every member of nested JSON objects, as key paths."""
    if not isinstance(value, dict):
        return []
    out: list[tuple[str, ...]] = []
    for key, child in value.items():
        out.append((*prefix, key))
        out.extend(member_paths(child, (*prefix, key)))
    return out


@st.composite
def near_valid_bodies(draw: st.DrawFn, target: str) -> bytes:
    """The valid answer with one or two members retyped or dropped (the edge of the happy path)."""
    body = valid_bodies()[target]
    candidates = member_paths(body)
    for path in draw(st.lists(st.sampled_from(candidates), unique=True, max_size=2)):
        parent: Any = body
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.integers(0, 3)):
            parent[path[-1]] = draw(field_values)
        else:
            parent.pop(path[-1], None)
    return dumps_decimal(body, draw(st.booleans()))


def upstream_header(draw: st.DrawFn) -> tuple[bytes, bytes]:
    name = draw(st.sampled_from(sorted(upstream_header_values)))
    return name.encode(), draw(upstream_header_values[name]).encode("latin-1")


@st.composite
def upstream_answers(draw: st.DrawFn, target: str) -> UpstreamAnswer:
    """Half near-valid (200, a nearly right body, maybe one odd header), half anything at all."""
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if draw(st.booleans()):
        body = draw(near_valid_bodies(target))
        if draw(st.integers(0, 2)) == 0:
            headers.append(upstream_header(draw))
        return UpstreamAnswer(200, headers, body)
    status = draw(st.sampled_from(UPSTREAM_STATUSES))
    body = draw(st.one_of(upstream_bodies(), near_valid_bodies(target)))
    compress = draw(st.sampled_from(["none", "none", "gzip", "deflate"]))
    if compress == "gzip":
        body = gzip.compress(body)
        headers.append((b"content-encoding", b"gzip"))
    elif compress == "deflate":
        body = zlib.compress(body)
        headers.append((b"content-encoding", b"deflate"))
    for _ in range(draw(st.integers(0, 3))):
        headers.append(upstream_header(draw))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.text(TCHAR, min_size=1, max_size=20))
        headers.append((name.encode(), draw(header_text).encode("latin-1")))
    fault = None
    if draw(st.integers(0, 4)) == 0:
        fault = draw(st.sampled_from(["reset-mid-body", *TRANSPORT_FAULTS]))
    return UpstreamAnswer(status, headers, body, fault)


SINGLE_ROUTE_STATUSES = {200, 404, 409, 422, 502, 503, 504}
PROVIDER_CODES = {
    "upstream_timeout": 504,
    "upstream_unreachable": 502,
    "upstream_error": 502,
    "upstream_invalid_response": 502,
    "upstream_auth_failed": 502,
    "upstream_rate_limited": 503,
    "provider_unavailable": 503,
    "provider_rejected": 422,
}
HEALTHY = {"benepia": "gafapay", "gafapay": "benepia"}


def check_upstream(target: str, answer: UpstreamAnswer) -> None:
    """`target` (benepia, token or gafapay) answers `answer`; the other calls are healthy."""
    provider = "gafapay" if target == "gafapay" else "benepia"
    note(f"{target} answers {answer!r:.1500}")
    single, merged = run_calls(
        PLAIN_SETTINGS,
        [
            Call("GET", f"/users/alice/points/{provider}", []),
            Call("GET", "/users/alice/points", []),
        ],
        {target: answer.response},
    )

    status = single.status_code
    assert status in SINGLE_ROUTE_STATUSES, (status, single.text[:1000])
    assert REQUEST_ID.fullmatch(single.headers.get("x-request-id", ""))
    if status == 200:
        event(f"{target}: 200")
        balance = single.json()
        assert balance["provider"] == provider
        assert DECIMAL.match(balance["points"]), balance
    else:
        assert single.headers["content-type"].startswith(PROBLEM), single.text[:500]
        problem = single.json()
        event(f"{target}: {status} {problem['code']}")
        assert problem["status"] == status
        assert problem["provider"] == provider
        assert PROVIDER_CODES.get(problem["code"]) == status, problem
        if status == 503:
            assert "retry-after" in single.headers

    assert merged.status_code == 200, merged.text[:1000]
    entries = {entry["provider"]: entry for entry in merged.json()["balances"]}
    assert entries[HEALTHY[provider]]["status"] == "ok"
    entry = entries[provider]
    if entry["status"] != "ok":
        # An internal_error entry would be a 500 in disguise.
        assert entry["error"]["code"] in PROVIDER_CODES, entry


@settings(max_examples=UPSTREAM_EXAMPLES, **COMMON_SETTINGS)
@given(answer=upstream_answers("benepia"))
def test_any_benepia_point_answer(answer: UpstreamAnswer) -> None:
    check_upstream("benepia", answer)


@settings(max_examples=UPSTREAM_EXAMPLES, **COMMON_SETTINGS)
@given(answer=upstream_answers("token"))
def test_any_iamport_get_token_answer(answer: UpstreamAnswer) -> None:
    check_upstream("token", answer)


@settings(max_examples=UPSTREAM_EXAMPLES, **COMMON_SETTINGS)
@given(answer=upstream_answers("gafapay"))
def test_any_gafapay_answer(answer: UpstreamAnswer) -> None:
    check_upstream("gafapay", answer)


# --- regressions: 500s these properties found (fixed by rejecting the input with a 422) --------


def one_shot(provider: str, raw_body: bytes) -> httpx.Response:
    (response,) = run_calls(
        PLAIN_SETTINGS,
        [
            Call(
                "POST",
                f"/users/alice/points/{provider}",
                [(b"content-type", b"application/json")],
                raw_body,
            )
        ],
    )
    return response


def test_benepia_password_with_lone_surrogate_is_422_not_500() -> None:
    """JSON may escape a lone surrogate; httpx cannot UTF-8-encode it into the upstream body."""
    response = one_shot("benepia", b'{"benepia_user":"a","benepia_password":"\\ud800"}')

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


def test_gafapay_non_ascii_token_is_422_not_500() -> None:
    """The account's token travels in an upstream header, which httpx encodes as ASCII."""
    body = json.dumps({"gafapay_user_id": "ab", "currency_id": "cd", "token": "é"}).encode()

    response = one_shot("gafapay", body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"

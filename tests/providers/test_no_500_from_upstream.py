"""No upstream answer, however hostile, may make the gateway answer 500.

Each provider is fed a table of broken answers; the gateway must answer problem+json with a code
from the DESIGN.md error table (single-provider route), or keep serving the other provider (merged
route). A seeded random mutation loop adds a few hundred more bodies.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import respx

from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_URL,
    CURRENCY,
    GAFAPAY_URL,
    PROBLEM,
    TOKEN_URL,
    AppFactory,
    benepia_ok,
    gafapay_ok,
    serve_in_process,
    token_ok,
)

# Every row of the DESIGN.md error table: code -> HTTP status.
DESIGN_TABLE = {
    "upstream_timeout": 504,
    "upstream_unreachable": 502,
    "upstream_error": 502,
    "upstream_invalid_response": 502,
    "upstream_auth_failed": 502,
    "upstream_rate_limited": 503,
    "provider_unavailable": 503,
    "provider_rejected": 422,
    "unknown_provider": 404,
    "account_not_linked": 404,
    "invalid_request": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "overloaded": 503,
    "internal_error": 500,
}
# What a failed provider call may be reported as.
PROVIDER_CODES = {
    "upstream_timeout",
    "upstream_unreachable",
    "upstream_error",
    "upstream_invalid_response",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "provider_unavailable",
    "provider_rejected",
}
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")

DEPTH = 100_000
FIVE_MB = 5 * 1024 * 1024
BIG_INT = "9" * 5000
LONE_SURROGATE = "\\ud800"


class Chunks(httpx.AsyncByteStream):
    """A streamed body (no Content-Length), optionally failing after its chunks."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self._chunks = chunks
        self._fail = fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._fail is not None:
            raise self._fail


Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Hostile:
    """One broken upstream answer, built fresh for every request."""

    name: str
    body: bytes = b""
    status: int = 200
    headers: Headers = field(default_factory=list)
    streamed: bool = False
    stream_error: bool = False
    bug: str | None = None

    def response(self) -> httpx.Response:
        if self.streamed or self.stream_error:
            chunks = [self.body[i : i + 65536] for i in range(0, len(self.body), 65536)]
            fail = httpx.ReadError("connection reset mid-body") if self.stream_error else None
            return httpx.Response(self.status, headers=self.headers, stream=Chunks(chunks, fail))
        # A prebuilt ByteStream is not read (nor decoded) before the gateway reads it.
        return httpx.Response(self.status, headers=self.headers, stream=httpx.ByteStream(self.body))

    def param(self, *before: str) -> object:
        """This answer as a test case, after the values `before` (a known bug: strict xfail)."""
        marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {self.bug}")] if self.bug else []
        return pytest.param(*before, self, id="-".join((*before, self.name)), marks=marks)


def ctype(value: bytes = b"application/json") -> Headers:
    return [(b"content-type", value)]


COMMON: list[Hostile] = [
    Hostile("empty-200"),
    Hostile("whitespace", b" \r\n\t "),
    Hostile("plain-text", b"OK", headers=ctype(b"text/plain")),
    Hostile(
        "html-200", b"<!doctype html><html><body>Hi</body></html>", headers=ctype(b"text/html")
    ),
    Hostile("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", headers=ctype(b"image/png")),
    Hostile("truncated-json", b'{"code":0,"success":1,"data":{"user_po'),
    Hostile("json-null", b"null"),
    Hostile("json-true", b"true"),
    Hostile("json-number", b"12000"),
    Hostile("json-string", b'"12000"'),
    Hostile("json-empty-array", b"[]"),
    Hostile("json-empty-object", b"{}"),
    Hostile("nan-literal", b"NaN"),
    Hostile("nested-arrays-100000", b"[" * DEPTH + b"]" * DEPTH),
    Hostile("nested-objects-100000", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH),
    Hostile("5mb-body", b'{"pad":"' + b"x" * FIVE_MB + b'"}'),
    Hostile("5mb-streamed", b" " * FIVE_MB + b"{}", streamed=True),
    Hostile("reset-mid-body", b'{"code":0,', stream_error=True),
    Hostile("invalid-utf8", b'{"code":0,"message":"\xff\xfe\xc0\xaf","success":1}'),
    Hostile("utf32-bom-garbage", b"\xff\xfe\x00\x00garbage"),
    Hostile("nul-bytes", b"\x00" * 64),
    Hostile("gzip-corrupt", b"definitely not gzip", headers=[(b"content-encoding", b"gzip")]),
    Hostile("deflate-corrupt", b"\x00\x01\x02garbage", headers=[(b"content-encoding", b"deflate")]),
    Hostile(
        "gzip-of-html", gzip.compress(b"<html>x</html>"), headers=[(b"content-encoding", b"gzip")]
    ),
    Hostile("int-5000-digits", BIG_INT.encode()),
    Hostile("status-100", status=100),
    Hostile("status-204", status=204),
    Hostile("status-301", status=301, headers=[(b"location", b"https://evil.test/")]),
    Hostile("status-302", b"moved", status=302, headers=[(b"location", b"/elsewhere")]),
    Hostile("status-404-html", b"<html>Not Found</html>", status=404),
    Hostile("status-418", b"I'm a teapot", status=418),
    Hostile("status-451", status=451),
    Hostile("status-599", b"{}", status=599),
    Hostile("429-retry-after-garbage", status=429, headers=[(b"retry-after", b"soon")]),
    Hostile("429-retry-after-negative", status=429, headers=[(b"retry-after", b"-5")]),
    Hostile("503-retry-after-fraction", status=503, headers=[(b"retry-after", b"1.5")]),
    Hostile("content-length-lies", b"{}", headers=[(b"content-length", b"99999999999999999999")]),
    Hostile(
        "429-retry-after-superscript",
        status=429,
        headers=[(b"retry-after", "²".encode())],
    ),
    Hostile(
        "429-retry-after-5000-digits",
        status=429,
        headers=[(b"retry-after", BIG_INT.encode())],
    ),
    Hostile(
        "429-retry-after-date-overflow",
        status=429,
        headers=[(b"retry-after", b"Mon, 01 Jan 2026 00:00:00 +99999999999999")],
    ),
    Hostile(
        "content-length-superscript",
        b"{}",
        headers=[(b"content-length", "²".encode())],
    ),
    Hostile(
        "content-length-5000-digits",
        b"{}",
        headers=[(b"content-length", BIG_INT.encode())],
    ),
    Hostile("float-huge-exponent", b'{"x":1e999999999999999999999}'),
]

BENEPIA_ONLY: list[Hostile] = [
    Hostile("code-string", b'{"code":"0","message":"","response":{"point":1}}'),
    Hostile("code-float", b'{"code":0.0,"message":"","response":{"point":1}}'),
    Hostile("code-bool", b'{"code":false,"message":"","response":{"point":1}}'),
    Hostile("code-null", b'{"code":null,"message":"","response":{"point":1}}'),
    Hostile("code-huge", b'{"code":' + b"7" * 4000 + b',"message":"x","response":null}'),
    Hostile("message-object", b'{"code":1,"message":{"ko":"x"},"response":null}'),
    Hostile("message-900kb", b'{"code":1,"message":"' + b"m" * 900_000 + b'","response":null}'),
    Hostile("response-list", b'{"code":0,"message":"","response":[{"point":1}]}'),
    Hostile("response-string", b'{"code":0,"message":"","response":"12000"}'),
    Hostile("point-object", b'{"code":0,"message":"","response":{"point":{"value":1}}}'),
    Hostile("point-list", b'{"code":0,"message":"","response":{"point":[12000]}}'),
    Hostile("point-float", b'{"code":0,"message":"","response":{"point":12000.0}}'),
    Hostile("point-exponent", b'{"code":0,"message":"","response":{"point":1e3}}'),
    Hostile("point-nan", b'{"code":0,"message":"","response":{"point":NaN}}'),
    Hostile("point-1e18", b'{"code":0,"message":"","response":{"point":1000000000000000000}}'),
    Hostile("point-5000-digits", b'{"code":0,"response":{"point":' + BIG_INT.encode() + b"}}"),
    Hostile("point-deep", b'{"code":0,"response":{"point":' + b"[" * DEPTH + b"]" * DEPTH + b"}}"),
    Hostile("duplicate-code", b'{"code":0,"code":1,"message":"dup","response":{"point":1}}'),
    Hostile("401-html", b"<html>401</html>", status=401),
    Hostile("500-envelope-wrong-types", b'{"code":"x","message":[1],"response":5}', status=500),
    Hostile(
        "message-lone-surrogate",
        b'{"code":1,"message":"' + LONE_SURROGATE.encode() + b'","response":null}',
    ),
]

GAFAPAY_ONLY: list[Hostile] = [
    Hostile("success-null", b'{"success":null,"data":{"user_points":{"points":1}}}'),
    Hostile("success-list", b'{"success":[1],"data":{"user_points":{"points":1}}}'),
    Hostile("success-object", b'{"success":{"ok":1},"data":{"user_points":{"points":1}}}'),
    Hostile("success-yes", b'{"success":"yes","data":{"user_points":{"points":1}}}'),
    Hostile("success-minus-1", b'{"success":-1,"data":{"user_points":{"points":1}}}'),
    Hostile("success-huge", b'{"success":' + b"1" * 4000 + b"}"),
    Hostile("error-object", b'{"success":0,"error":{"msg":"x"}}'),
    Hostile("error-nested", b'{"success":0,"error":[["a"],{"b":1},5,null]}'),
    Hostile("error-900kb", b'{"success":0,"error":["' + b"e" * 900_000 + b'"]}'),
    Hostile("data-string", b'{"success":1,"error":[],"data":"user_points"}'),
    Hostile("data-list", b'{"success":1,"error":[],"data":[{"user_points":{"points":1}}]}'),
    Hostile("user-points-null", b'{"success":1,"error":[],"data":{"user_points":null}}'),
    Hostile("user-points-string", b'{"success":1,"error":[],"data":{"user_points":"1"}}'),
    Hostile("points-object", b'{"success":1,"data":{"user_points":{"points":{"v":1}}}}'),
    Hostile("points-list", b'{"success":1,"data":{"user_points":{"points":[1]}}}'),
    Hostile(
        "points-5000-digits",
        b'{"success":1,"data":{"user_points":{"points":' + BIG_INT.encode() + b"}}}",
    ),
    Hostile("points-tiny-exponent", b'{"success":1,"data":{"user_points":{"points":1e-400}}}'),
    Hostile("points-infinity", b'{"success":1,"data":{"user_points":{"points":-Infinity}}}'),
    Hostile(
        "user-id-list",
        b'{"success":1,"data":{"user_points":{"points":1,"user_id":["'
        + ALICE_GAFAPAY.encode()
        + b'"]}}}',
    ),
    Hostile(
        "currency-id-number", b'{"success":1,"data":{"user_points":{"points":1,"currency_id":1}}}'
    ),
    Hostile("401-html", b"<html>401</html>", status=401),
    Hostile("500-success-1", gafapay_ok().content, status=500),
    Hostile(
        "points-exponent-overflow",
        b'{"success":1,"data":{"user_points":{"points":1e1000000}}}',
    ),
    Hostile(
        "error-lone-surrogate",
        b'{"success":0,"error":["' + LONE_SURROGATE.encode() + b'"]}',
    ),
]

TOKEN_HOSTILE: list[Hostile] = [
    Hostile("empty", b""),
    Hostile("html", b"<html>login</html>"),
    Hostile("code-0-no-response", b'{"code":0,"message":null,"response":null}'),
    Hostile("token-number", b'{"code":0,"response":{"access_token":1,"now":1,"expired_at":9}}'),
    Hostile("token-empty", b'{"code":0,"response":{"access_token":"","now":1,"expired_at":9}}'),
    Hostile("now-string", b'{"code":0,"response":{"access_token":"t","now":"1","expired_at":9}}'),
    Hostile("expired", b'{"code":0,"response":{"access_token":"t","now":9,"expired_at":1}}'),
    Hostile(
        "lifetime-huge",
        b'{"code":0,"response":{"access_token":"t","now":0,"expired_at":99999999999}}',
    ),
    Hostile("code-1", b'{"code":1,"message":"bad key","response":null}'),
    Hostile("status-401", b"{}", status=401),
    Hostile("status-500", b"<html>500</html>", status=500),
    Hostile("status-429", status=429),
    Hostile("gzip-corrupt", b"xx", headers=[(b"content-encoding", b"gzip")]),
    Hostile(
        "token-non-ascii",
        '{"code":0,"response":{"access_token":"tök","now":1,"expired_at":1801}}'.encode(),
    ),
]

HOSTILE = {"benepia": COMMON + BENEPIA_ONLY, "gafapay": COMMON + GAFAPAY_ONLY}
# (provider, answer) cases, with ids such as "benepia-empty-200".
PROVIDER_CASES = [h.param(provider) for provider, answers in HOSTILE.items() for h in answers]
HEALTHY = {"benepia": "gafapay", "gafapay": "benepia"}


def assert_provider_problem(response: httpx.Response, provider: str) -> None:
    """A problem+json answer about `provider` with a code and status from the DESIGN table."""
    assert response.status_code != 500, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM), response.text[:500]
    body = response.json()
    assert body["code"] in PROVIDER_CODES, body
    assert response.status_code == body["status"] == DESIGN_TABLE[body["code"]]
    assert body["provider"] == provider
    assert ("retry-after" in response.headers) == (response.status_code == 503)


def assert_error_entry(response: httpx.Response, failing: str, healthy: str) -> None:
    """The merged answer keeps the healthy provider and reports the other as a mapped error."""
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert answer["complete"] is False
    assert response.headers["x-points-complete"] == "false"
    entries = {entry["provider"]: entry for entry in answer["balances"]}
    assert entries[healthy]["status"] == "ok"
    error = entries[failing]["error"]
    assert entries[failing]["status"] == "error"
    assert error["code"] != "internal_error"
    assert error["code"] in PROVIDER_CODES
    assert error["status"] == DESIGN_TABLE[error["code"]]


def feed(upstream: respx.MockRouter, provider: str, hostile: Hostile) -> None:
    """`provider`'s data call answers `hostile` (Benepia's getToken succeeds)."""
    if provider == "benepia":
        upstream.post(TOKEN_URL).mock(return_value=token_ok())
        upstream.post(BENEPIA_URL).mock(side_effect=lambda request: hostile.response())
    else:
        upstream.get(GAFAPAY_URL).mock(side_effect=lambda request: hostile.response())


def serve_ok(upstream: respx.MockRouter, provider: str) -> None:
    """`provider` answers a good balance."""
    if provider == "benepia":
        upstream.post(TOKEN_URL).mock(return_value=token_ok())
        upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    else:
        upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())


@pytest.mark.parametrize(("provider", "hostile"), PROVIDER_CASES)
async def test_single_route(
    client: httpx.AsyncClient, upstream: respx.MockRouter, provider: str, hostile: Hostile
) -> None:
    feed(upstream, provider, hostile)

    assert_provider_problem(await client.get(f"/users/alice/points/{provider}"), provider)


@pytest.mark.parametrize(("provider", "hostile"), PROVIDER_CASES)
async def test_merged_route(
    client: httpx.AsyncClient, upstream: respx.MockRouter, provider: str, hostile: Hostile
) -> None:
    feed(upstream, provider, hostile)
    serve_ok(upstream, HEALTHY[provider])

    assert_error_entry(await client.get("/users/alice/points"), provider, HEALTHY[provider])


@pytest.mark.parametrize("hostile", [h.param() for h in TOKEN_HOSTILE])
async def test_benepia_get_token_garbage(
    client: httpx.AsyncClient, upstream: respx.MockRouter, hostile: Hostile
) -> None:
    upstream.post(TOKEN_URL).mock(side_effect=lambda request: hostile.response())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())

    assert_provider_problem(await client.get("/users/alice/points/benepia"), "benepia")


def _pairs() -> list[object]:
    safe_b = [h for h in HOSTILE["benepia"] if h.bug is None]
    safe_g = [h for h in HOSTILE["gafapay"] if h.bug is None]
    return [
        pytest.param(b, g, id=f"{b.name}+{g.name}")
        for b, g in zip(safe_b, safe_g[::-1], strict=False)
    ]


@pytest.mark.parametrize(("benepia", "gafapay"), _pairs())
async def test_merged_route_when_both_fail(
    client: httpx.AsyncClient, upstream: respx.MockRouter, benepia: Hostile, gafapay: Hostile
) -> None:
    feed(upstream, "benepia", benepia)
    feed(upstream, "gafapay", gafapay)

    response = await client.get("/users/alice/points")

    assert response.status_code != 500, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    # `providers_failed` is the project's name for "all failed, in different ways" (DESIGN: 502).
    assert body["code"] in PROVIDER_CODES | {"providers_failed"}
    assert response.status_code == body["status"]
    assert body["complete"] is False
    assert response.headers["x-points-complete"] == "false"
    assert ("retry-after" in response.headers) == (response.status_code == 503)
    for entry in body["balances"]:
        assert entry["status"] == "error"
        assert entry["error"]["code"] in PROVIDER_CODES


# --- seeded random mutations -------------------------------------------------------------------

ALPHABET = b'{}[]:,"\\-+.eE0123456789 nulltruefalseNaN\x00\xff\xc3'
STATUSES = [200] * 8 + [201, 400, 401, 403, 404, 429, 500, 502, 503]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[at : at + rng.randint(1, 8)]
        elif op == 1:
            data[at:at] = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
        elif op == 2 and data:
            data[min(at, len(data) - 1)] = rng.choice(ALPHABET)
        elif op == 3:
            del data[at:]
        else:
            start = rng.randrange(len(data) + 1)
            data[at:at] = data[start : start + rng.randint(1, 16)]
    return bytes(data)


def random_answer(rng: random.Random, seed: bytes) -> httpx.Response:
    headers: Headers = ctype()
    if rng.random() < 0.1:
        headers.append((b"retry-after", str(rng.randint(-5, 99999)).encode()))
    return httpx.Response(
        rng.choice(STATUSES), headers=headers, stream=httpx.ByteStream(mutate(rng, seed))
    )


@pytest.mark.parametrize(
    ("provider", "seed"),
    [
        ("benepia", benepia_ok().content),
        ("gafapay", gafapay_ok("1234.56").content),
        ("gafapay", gafapay_ok("1e3", user_id="00" + ALICE_GAFAPAY.upper()).content),
    ],
    ids=["benepia", "gafapay", "gafapay-exponent"],
)
async def test_random_mutations_never_500(
    gateway_app: AppFactory, upstream: respx.MockRouter, provider: str, seed: bytes
) -> None:
    rng = random.Random(20261122)
    current: list[httpx.Response] = []
    answer: Callable[[httpx.Request], httpx.Response] = lambda request: current[0]  # noqa: E731
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(side_effect=answer)
    upstream.get(GAFAPAY_URL).mock(side_effect=answer)
    seen: set[str] = set()

    async with serve_in_process(gateway_app()) as client:
        for _ in range(150):
            current[:] = [random_answer(rng, seed)]
            response = await client.get(f"/users/alice/points/{provider}")
            if response.status_code == 200:
                body = response.json()
                assert DECIMAL.match(body["points"]), body
                assert body["unit"] in ("benepia_point", f"gafapay:{CURRENCY}")
                seen.add("ok")
            else:
                assert_provider_problem(response, provider)
                seen.add(response.json()["code"])

    assert "upstream_invalid_response" in seen
    assert len(seen) >= 3

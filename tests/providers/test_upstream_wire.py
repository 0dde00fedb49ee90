"""The production (aiohttp) transport against an upstream that misbehaves at the HTTP level.

The emulators always send a Content-Length and plain bodies; this raw ASGI upstream stands in
for GafaPay to send what they cannot: chunked bodies, gzip, trickles, cut-off connections.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.main import create_app
from app.providers.registry import BUILTIN_PLUGINS
from app.sandbox.demo import DEMO_CURRENCY
from app.sandbox.gafapay import USER_POINTS_PATH
from app.sandbox.servers import Served, bind
from tests.support.servers import HOST, closed_port, gateway_settings, serving

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 8.0
CHUNK = 64 * 1024
TRICKLE_BYTES = 10
TRICKLE_PAUSE = 0.3
# Each behaviour is keyed by the GafaPay user id the gateway sends.
BEHAVIOURS = {
    "chunked": "a1",
    "gzip": "a2",
    "bad_gzip": "a3",
    "gzip_bomb": "a4",
    "cut_off": "a5",
    "trickle": "a6",
    "declared_oversize": "a7",
}


def _ok_body(user_id: str) -> bytes:
    record = (
        f'{{"id":"1","user_id":"{user_id}","user_type":2,"points":42.5,'
        f'"currency_id":"{DEMO_CURRENCY}"}}'
    )
    return f'{{"success":1,"error":[],"data":{{"user_points":{record}}}}}'.encode()


async def _start(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )


async def _body(send: Send, body: bytes, *, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def raw_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """A GafaPay stand-in whose answer depends on the user_id query parameter."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "http"
    assert scope["path"] == USER_POINTS_PATH
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    user_id = query.get("user_id", "")
    ok = _ok_body(user_id)
    if user_id == BEHAVIOURS["chunked"]:
        # No Content-Length: the size cap must hold while streaming.
        await _start(send, [])
        await _body(send, b'{"_padding":"', more=True)
        for _ in range(2 * 1024 * 1024 // CHUNK):
            await _body(send, b"x" * CHUNK, more=True)
        await _body(send, b'"}')
    elif user_id == BEHAVIOURS["declared_oversize"]:
        # Refused on the header alone: nothing of the body needs to be read.
        await _start(send, [(b"content-length", b"%d" % (4 * 1024 * 1024))])
        await _body(send, b"{}")
    elif user_id == BEHAVIOURS["gzip"]:
        packed = gzip.compress(ok)
        await _start(
            send, [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(packed))]
        )
        await _body(send, packed)
    elif user_id == BEHAVIOURS["bad_gzip"]:
        junk = b"this is not gzip at all"
        await _start(send, [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(junk))])
        await _body(send, junk)
    elif user_id == BEHAVIOURS["gzip_bomb"]:
        # Small on the wire, 4 MB once decoded: the cap must apply to the decoded body.
        packed = gzip.compress(b'{"_padding":"' + b"0" * 4 * 1024 * 1024 + b'"}')
        await _start(
            send, [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(packed))]
        )
        await _body(send, packed)
    elif user_id == BEHAVIOURS["cut_off"]:
        await _start(send, [(b"content-length", b"%d" % len(ok))])
        await _body(send, ok[:10], more=True)
        raise ConnectionAbortedError("upstream cut the connection mid-body (on purpose)")
    elif user_id == BEHAVIOURS["trickle"]:
        # Each byte comes well within the read timeout, the whole body not within the budget
        # (and the trickle ends soon after, so the server can shut down).
        await _start(send, [(b"content-length", b"%d" % len(ok))])
        for byte in ok[:TRICKLE_BYTES]:
            await _body(send, bytes([byte]), more=True)
            await asyncio.sleep(TRICKLE_PAUSE)
        await _body(send, ok[TRICKLE_BYTES:])
    else:
        await _start(send, [(b"content-length", b"%d" % len(ok))])
        await _body(send, ok)


def _directory() -> MemoryAccountStore:
    raw: dict[str, Any] = {
        name: {"gafapay": {"gafapay_user_id": uid, "currency_id": DEMO_CURRENCY}}
        for name, uid in BEHAVIOURS.items()
    }
    raw["plain"] = {"gafapay": {"gafapay_user_id": "a0", "currency_id": DEMO_CURRENCY}}
    plugins = {p.name: p for p in BUILTIN_PLUGINS}
    return MemoryAccountStore(load_accounts(raw, plugins, source="transport tests"))


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    upstream = Served(raw_upstream, bind(HOST, 0))
    settings = gateway_settings(f"http://{HOST}:{closed_port()}", upstream.url)
    gateway = Served(create_app(settings, store=_directory()), bind(HOST, 0))
    with serving([upstream, gateway]):
        yield gateway.url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=CLIENT_TIMEOUT) as c:
        yield c


async def gafapay_entry(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    resp = await client.get(f"/users/{user}/points")
    # One provider, so a failure is the whole answer (problem+json with the per-provider list).
    body: dict[str, Any] = resp.json()
    (entry,) = body["balances"]
    assert entry["provider"] == "gafapay"
    result: dict[str, Any] = entry
    return result


async def test_plain_answer(client: httpx.AsyncClient) -> None:
    entry = await gafapay_entry(client, "plain")
    assert entry["status"] == "ok", entry
    assert entry["points"] == "42.5"


async def test_gzip_answer_is_decoded(client: httpx.AsyncClient) -> None:
    entry = await gafapay_entry(client, "gzip")
    assert entry["status"] == "ok", entry
    assert entry["points"] == "42.5"


@pytest.mark.parametrize(
    ("user", "code"),
    [
        ("chunked", "upstream_invalid_response"),
        ("declared_oversize", "upstream_invalid_response"),
        ("bad_gzip", "upstream_invalid_response"),
        ("gzip_bomb", "upstream_invalid_response"),
        ("cut_off", "upstream_unreachable"),
        ("trickle", "upstream_timeout"),
    ],
)
async def test_misbehaving_upstream_maps_to_its_code(
    client: httpx.AsyncClient, user: str, code: str
) -> None:
    entry = await gafapay_entry(client, user)
    assert entry["status"] == "error"
    assert entry["error"]["code"] == code, entry
    # And the connection pool still serves the next request.
    after = await gafapay_entry(client, "plain")
    assert after["status"] == "ok", after


@pytest.mark.parametrize("user", ["chunked", "declared_oversize", "gzip_bomb"])
async def test_an_oversize_body_is_refused_with_the_status_it_came_with(
    client: httpx.AsyncClient, user: str
) -> None:
    entry = await gafapay_entry(client, user)
    assert entry["error"]["upstream_status"] == 200, entry
    assert "larger than" in entry["error"]["detail"], entry

"""The outbound seam's contract: both wires give the same answers to the same upstream.

A scripted HTTP/1.1 server on 127.0.0.1 plays each case byte for byte; the production wire
(aiohttp) and the httpx wire (over httpx's own network transport, as a plugin would use it) must
return the same Reply or raise the same gateway error.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from app.errors import ProviderError, UpstreamInvalidResponse, UpstreamTimeout, UpstreamUnreachable
from app.outbound.aiohttp_upstream import AiohttpUpstream
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import Reply, Upstream, UpstreamConfig
from app.settings import OutboundSettings
from tests.support.servers import HOST, closed_port

CAP = 64 * 1024
BODY = json.dumps({"points": 12000, "unit": "star"}).encode()
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def head(status: str, *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode()


async def answer(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def ok(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(
        writer,
        head("200 OK", "Content-Type: application/json", f"Content-Length: {len(BODY)}") + BODY,
    )


async def rate_limited(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(
        writer, head("429 Too Many Requests", "Retry-After: 7", "Content-Length: 2") + b"{}"
    )


async def gzip_within_cap(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    packed = gzip.compress(BODY)
    await answer(
        writer, head("200 OK", "Content-Encoding: gzip", f"Content-Length: {len(packed)}") + packed
    )


async def gzip_over_cap(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # 40 KiB on the wire, 4 MiB once decoded: a small bomb.
    packed = gzip.compress(b"0" * (4 * 1024 * 1024), compresslevel=9)
    await answer(
        writer, head("200 OK", "Content-Encoding: gzip", f"Content-Length: {len(packed)}") + packed
    )


async def declared_over_cap(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, head("200 OK", f"Content-Length: {CAP * 16}") + b"{")
    await asyncio.sleep(5)  # the rest never comes: the declared length alone refuses it


async def counted_over_cap(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, head("200 OK", "Transfer-Encoding: chunked"))
    chunk = b"x" * 8192
    for _chunk in range(CAP // len(chunk) + 2):
        await answer(writer, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await answer(writer, b"0\r\n\r\n")


async def garbled_length(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, head("200 OK", "Content-Length: 12a", "Connection: close") + BODY)
    writer.close()


async def hangs(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


async def reset_mid_body(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, head("200 OK", "Content-Length: 1000") + b'{"points": 1')
    writer.transport.abort()


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that plays `script` to each connection, after reading its head."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.close()
        await server.wait_closed()


def config(base_url: str) -> UpstreamConfig:
    return UpstreamConfig(
        provider="acme", base_url=base_url, timeout=0.5, connect_timeout=0.5, max_bytes=CAP
    )


def aiohttp_wire(base_url: str) -> Upstream:
    return AiohttpUpstream(config(base_url), pool=OutboundSettings())


def httpx_wire(base_url: str) -> Upstream:
    return HttpxUpstream(config(base_url), transport=httpx.AsyncHTTPTransport())


WIRES = pytest.mark.parametrize("wire", [aiohttp_wire, httpx_wire], ids=["aiohttp", "httpx"])


async def send_to(wire: Callable[[str], Upstream], base_url: str) -> Reply:
    upstream = wire(base_url)
    try:
        return await upstream.send(upstream.request("GET", upstream.url("/points")))
    finally:
        await upstream.aclose()


@WIRES
async def test_200(wire: Callable[[str], Upstream]) -> None:
    async with scripted(ok) as url:
        reply = await send_to(wire, url)
    assert (reply.provider, reply.status, reply.body) == ("acme", 200, BODY)
    assert reply.headers["content-type"] == "application/json"


@WIRES
async def test_429_with_retry_after_is_a_reply(wire: Callable[[str], Upstream]) -> None:
    async with scripted(rate_limited) as url:
        reply = await send_to(wire, url)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"


@WIRES
async def test_a_compressed_body_within_the_cap_is_decoded(wire: Callable[[str], Upstream]) -> None:
    async with scripted(gzip_within_cap) as url:
        reply = await send_to(wire, url)
    assert reply.body == BODY


REFUSED: list[tuple[Script, type[ProviderError], int | None]] = [
    (gzip_over_cap, UpstreamInvalidResponse, 200),
    (declared_over_cap, UpstreamInvalidResponse, 200),
    (counted_over_cap, UpstreamInvalidResponse, 200),
    (hangs, UpstreamTimeout, None),
    (reset_mid_body, UpstreamUnreachable, None),
]


@WIRES
@pytest.mark.parametrize(
    ("script", "error", "status"), REFUSED, ids=[s.__name__ for s, _, _ in REFUSED]
)
async def test_trouble_is_the_same_gateway_error(
    wire: Callable[[str], Upstream], script: Script, error: type[ProviderError], status: int | None
) -> None:
    async with scripted(script) as url:
        with pytest.raises(error) as raised:
            await asyncio.wait_for(send_to(wire, url), 5)
    assert type(raised.value) is error
    assert raised.value.provider == "acme"
    assert raised.value.upstream_status == status


@WIRES
async def test_connection_refused_is_unreachable(wire: Callable[[str], Upstream]) -> None:
    with pytest.raises(UpstreamUnreachable) as raised:
        await send_to(wire, f"http://{HOST}:{closed_port()}")
    assert "ConnectError" in raised.value.detail


@WIRES
async def test_a_garbled_length_is_a_broken_answer(wire: Callable[[str], Upstream]) -> None:
    # Never a guessed length, and never a crash on one (int("12a"), int("²")).
    async with scripted(garbled_length) as url:
        with pytest.raises(UpstreamUnreachable) as raised:
            await send_to(wire, url)
    assert "RemoteProtocolError" in raised.value.detail

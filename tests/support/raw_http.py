"""HTTP/1.1 over a plain socket: what httpx will not send (partial or huge headers, pipelining)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MIB = 1024 * 1024


def connect(base_url: str, *, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server of `base_url`."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def request(path: str = "/healthz", *, headers: dict[str, str] | None = None) -> bytes:
    """A complete GET request."""
    fields = [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines = [f"GET {path} HTTP/1.1", "Host: test", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_until_closed(sock: socket.socket, *, within: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or `within` s pass (False)."""
    received = bytearray()
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # closed with our unread bytes still in its buffer
            return bytes(received), True
        if not chunk:
            return bytes(received), True
        received += chunk
    return bytes(received), False


@dataclass(frozen=True, slots=True)
class Reply:
    """One parsed response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_replies(data: bytes) -> list[Reply]:
    """The complete Content-Length framed responses at the start of `data`."""
    replies = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        replies.append(Reply(int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return replies


def read_replies(sock: socket.socket, count: int, *, within: float = 10.0) -> list[Reply]:
    """Exactly `count` responses from a connection that stays open."""
    received = b""
    deadline = time.monotonic() + within
    while len(replies := parse_replies(received)) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(replies)} of {count} responses within {within} s"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(replies)} of {count} responses"
        received += chunk
    assert len(replies) == count, f"{len(replies)} responses, {count} expected"
    return replies


def rss_mib(pid: int) -> float:
    """The resident memory of a process, MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")

"""A request's client address: its peer, or X-Forwarded-For's word when the peer is a trusted proxy.

Every per-address use (the anonymous rate limit, the failed-authentication count, the log lines)
goes through `client_address`, so they all name the same caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import Scope

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

UNKNOWN = "unknown"
_STATE_KEY = "client_address"


def parse_address(text: str) -> Address | None:
    """The address in one X-Forwarded-For entry (a port and IPv6 brackets allowed), or None."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:443
        inside, bracket, port = text[1:].partition("]")
        if not bracket or not (port == "" or (port[:1] == ":" and _is_port(port[1:]))):
            return None
        text = inside
    elif text.count(":") == 1:  # 192.0.2.1:443
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            return None  # "fe80::1%a" and "fe80::1%b" would count as two callers
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit()


Hop = tuple[str | None, bool]
"""One address as text: its canonical form (None when malformed), and whether it is trusted."""


def classify(text: str, proxies: Sequence[Network]) -> Hop:
    """`text`'s canonical address (None when malformed) and whether a trusted proxy has it."""
    address = parse_address(text)
    if address is None:
        return None, False
    return str(address), any(address in network for network in proxies)


def _walk(peer: str, forwarded_for: Sequence[str], hop_of: Callable[[str], Hop]) -> str:
    hop, trusted = hop_of(peer)
    if hop is None or not trusted:
        return peer
    for line in reversed(forwarded_for):
        for entry in reversed(line.split(",")):
            address, trusted = hop_of(entry.strip())
            if address is None:
                return hop
            if not trusted:
                return address
            hop = address
    return hop


def client_address(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]
) -> str:
    """The peer, unless it is a trusted proxy: then the right-most untrusted X-Forwarded-For entry.

    `forwarded_for` holds the X-Forwarded-For header lines in the order received. Each trusted
    proxy appends the address it was called from, so the entries are read from the right, over
    trusted proxies, to the first address no trusted proxy is: everything to its left was written
    by the caller. A malformed entry is never an address and ends the walk (what lies left of it
    is unvouched for): the address is then the last trusted hop, as it is when every entry is one.
    """
    if not peer:
        return UNKNOWN
    if not proxies:
        return peer
    return _walk(peer, forwarded_for, partial(classify, proxies=proxies))


class ClientAddresses:
    """Decides a request's client address once, and keeps it on the request's state."""

    def __init__(self, trusted_proxies: Sequence[Network]) -> None:
        self._proxies = tuple(trusted_proxies)
        # Parsing an address costs microseconds, and the same proxies and clients come back.
        self._hop_of = lru_cache(maxsize=4096)(partial(classify, proxies=self._proxies))

    def of(self, scope: Scope) -> str:
        """The client address of the request in `scope`."""
        state = scope.setdefault("state", {})
        found = state.get(_STATE_KEY)
        if found is None:
            client = scope.get("client")
            peer = client[0] if client else None
            if not peer:
                found = UNKNOWN
            elif not self._proxies:
                found = peer
            else:
                forwarded = [
                    value.decode("latin-1")
                    for name, value in scope["headers"]
                    if name == b"x-forwarded-for"
                ]
                found = _walk(peer, forwarded, self._hop_of)
            state[_STATE_KEY] = found
        assert isinstance(found, str)
        return found

"""The client address rule: the peer, or the right-most untrusted X-Forwarded-For entry behind a
trusted proxy (CIDRs, IPv6, ports, several header lines; a malformed entry ends the walk)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from starlette.types import Scope

from app.security.client_address import (
    UNKNOWN,
    ClientAddresses,
    Network,
    client_address,
    parse_address,
)

PROXIES: list[Network] = [ip_network("10.0.0.0/8"), ip_network("2001:db8:1::/48")]
CLIENT = "203.0.113.9"


def address(peer: str | None, *lines: str, proxies: list[Network] = PROXIES) -> str:
    return client_address(peer, list(lines), proxies)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards() -> None:
    assert address("198.51.100.7", CLIENT, proxies=[]) == "198.51.100.7"
    assert address("10.0.0.1", CLIENT, proxies=[]) == "10.0.0.1"


@pytest.mark.parametrize("peer", [None, ""])
def test_no_peer_is_unknown(peer: str | None) -> None:
    assert address(peer, CLIENT) == UNKNOWN


def test_an_untrusted_peer_forwards_nothing() -> None:
    assert address("198.51.100.7", CLIENT) == "198.51.100.7"
    assert address("11.0.0.1", "10.0.0.2") == "11.0.0.1"


def test_a_trusted_peer_forwards_the_address_it_was_called_from() -> None:
    assert address("10.0.0.1", CLIENT) == CLIENT
    assert address("10.200.3.4", f"  {CLIENT}  ") == CLIENT


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert address("10.0.0.1") == "10.0.0.1"


def test_the_right_most_untrusted_entry_wins_over_what_the_caller_wrote() -> None:
    # The caller wrote the first entry; the trusted proxy appended the one it saw.
    assert address("10.0.0.1", f"192.0.2.66, {CLIENT}") == CLIENT
    assert address("10.0.0.1", f"192.0.2.66, {CLIENT}, 10.9.9.9, 10.1.1.1") == CLIENT


def test_when_every_hop_is_trusted_the_furthest_one_is_the_client() -> None:
    assert address("10.0.0.1", "10.0.0.3, 10.0.0.2") == "10.0.0.3"


def test_several_header_lines_read_as_one_list_in_order() -> None:
    assert address("10.0.0.1", "192.0.2.66", CLIENT) == CLIENT
    assert address("10.0.0.1", f"192.0.2.66, {CLIENT}", "10.0.0.2") == CLIENT


def test_ipv6_peers_and_entries_in_canonical_form() -> None:
    assert address("2001:db8:1::5", "2001:DB8:2:0::0001") == "2001:db8:2::1"
    assert address("2001:db8:1::5", f"{CLIENT}, 2001:db8:1::9") == CLIENT
    assert address("2001:db8:2::5", CLIENT) == "2001:db8:2::5"  # outside the trusted /48


def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    assert address("::ffff:10.0.0.1", f"::ffff:{CLIENT}") == CLIENT


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (f"{CLIENT}:4711", CLIENT),
        ("[2001:db8:2::7]:443", "2001:db8:2::7"),
        ("[2001:db8:2::7]", "2001:db8:2::7"),
    ],
)
def test_ports_and_brackets_are_allowed(entry: str, expected: str) -> None:
    assert address("10.0.0.1", entry) == expected


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        " ",
        "unknown",
        "nonsense",
        "1.2.3",
        "300.1.1.1",
        f"{CLIENT}:",
        f"{CLIENT}:http",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
        "fe80::1%eth0",
        "1.2.3.4/32",
        "_gazonk",
        "٣.٣.٣.٣",
    ],
)
def test_a_malformed_entry_is_never_the_client_and_ends_the_walk(malformed: str) -> None:
    assert parse_address(malformed) is None
    # Nothing left of it is believed: the address is the trusted hop that reported it.
    assert address("10.0.0.1", f"192.0.2.66, {malformed}") == "10.0.0.1"
    assert address("10.0.0.1", f"192.0.2.66, {malformed}, 10.0.0.2") == "10.0.0.2"
    # Right of the decision it changes nothing.
    assert address("10.0.0.1", f"{malformed}, {CLIENT}") == CLIENT


def test_cidrs_decide_who_is_trusted() -> None:
    proxies: list[Network] = [ip_network("192.168.4.0/30")]
    assert address("192.168.4.3", CLIENT, proxies=proxies) == CLIENT
    assert address("192.168.4.4", CLIENT, proxies=proxies) == "192.168.4.4"


def scope(client: tuple[str, int] | None, *forwarded: bytes) -> Scope:
    headers = [(b"host", b"gateway.test")] + [(b"x-forwarded-for", v) for v in forwarded]
    return {"type": "http", "client": client, "headers": headers}


def test_the_request_rule_reads_the_peer_and_every_header_line_once() -> None:
    addresses = ClientAddresses(PROXIES)
    request = scope(("10.0.0.1", 5000), b"192.0.2.66", CLIENT.encode())
    assert addresses.of(request) == CLIENT
    request["headers"] = []  # decided once per request: every use names the same client
    assert addresses.of(request) == CLIENT
    assert request["state"]["client_address"] == CLIENT


def test_the_request_rule_without_proxies_is_the_peer() -> None:
    addresses = ClientAddresses([])
    assert addresses.of(scope(("198.51.100.7", 5000), CLIENT.encode())) == "198.51.100.7"
    assert addresses.of(scope(None, CLIENT.encode())) == UNKNOWN


@pytest.mark.parametrize(
    ("peer", "lines"),
    [
        ("10.0.0.1", ["192.0.2.66", f" {CLIENT} "]),
        ("10.0.0.1", ["192.0.2.66, bogus, 10.0.0.2"]),
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"]),
        ("::ffff:10.0.0.1", ["[2001:db8:2::7]:443"]),
        ("198.51.100.7", [CLIENT]),
        ("not-an-address", [CLIENT]),
    ],
)
def test_the_request_rule_decides_as_the_function_does(peer: str, lines: list[str]) -> None:
    addresses = ClientAddresses(PROXIES)
    for _ in range(2):  # the second time from its cache
        request = scope((peer, 5000), *(line.encode() for line in lines))
        assert addresses.of(request) == client_address(peer, lines, PROXIES)

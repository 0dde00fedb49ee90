"""The in-process account cache: what it holds, for how long, and what it refuses to keep."""

from __future__ import annotations

from types import MappingProxyType

from app.accounts.account_cache import AccountCache, Linked
from app.accounts.change_feed import CHANGED, RESEALED, AccountChange, parse_change
from app.errors import CredentialsUnreadable

ALICE: Linked = MappingProxyType({"benepia": CredentialsUnreadable("x")})
BOB: Linked = MappingProxyType({})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def active_cache(
    clock: Clock | None = None, *, max_entries: int = 10, ttl: float = 60
) -> AccountCache:
    cache = AccountCache(max_entries=max_entries, ttl=ttl, clock=clock or Clock())
    cache.resume()
    return cache


def test_holds_nothing_until_its_listener_listens() -> None:
    cache = AccountCache(max_entries=10, ttl=60)
    cache.put("alice", ALICE, cache.epoch)
    assert cache.get("alice") is None
    cache.resume()
    cache.put("alice", ALICE, cache.epoch)
    assert cache.get("alice") is ALICE


def test_a_user_with_nothing_linked_is_held_too() -> None:
    cache = active_cache()
    cache.put("bob", BOB, cache.epoch)
    assert cache.get("bob") is BOB


def test_a_lookup_that_raced_a_change_is_not_kept() -> None:
    cache = active_cache()
    epoch = cache.epoch  # a lookup starts
    cache.invalidate("alice")  # a change lands while it reads
    cache.put("alice", ALICE, epoch)
    assert cache.get("alice") is None
    cache.put("alice", ALICE, cache.epoch)
    assert cache.get("alice") is ALICE


def test_invalidate_drops_one_user() -> None:
    cache = active_cache()
    cache.put("alice", ALICE, cache.epoch)
    cache.put("bob", BOB, cache.epoch)
    cache.invalidate("alice")
    assert cache.get("alice") is None
    assert cache.get("bob") is BOB


def test_losing_the_listener_empties_and_stops_the_cache() -> None:
    cache = active_cache()
    cache.put("alice", ALICE, cache.epoch)
    epoch = cache.epoch
    cache.suspend()
    assert not cache.active
    assert cache.get("alice") is None
    cache.put("alice", ALICE, cache.epoch)
    assert len(cache) == 0
    cache.resume()
    cache.put("alice", ALICE, epoch)  # read before the listener came back: maybe stale
    assert cache.get("alice") is None


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = active_cache(clock, ttl=30)
    cache.put("alice", ALICE, cache.epoch)
    clock.now = 29.9
    assert cache.get("alice") is ALICE
    clock.now = 30.0
    assert cache.get("alice") is None
    assert len(cache) == 0


def test_the_least_recently_used_goes_first() -> None:
    cache = active_cache(max_entries=2)
    cache.put("alice", ALICE, cache.epoch)
    cache.put("bob", BOB, cache.epoch)
    assert cache.get("alice") is ALICE  # alice is now the most recent
    cache.put("carol", BOB, cache.epoch)
    assert cache.get("bob") is None
    assert cache.get("alice") is ALICE
    assert len(cache) == 2


def test_the_triggers_payload_is_read() -> None:
    assert parse_change("gafapay alice.kim@x 1000.25 changed", now=1000.5) == AccountChange(
        "gafapay", "alice.kim@x", 0.25, CHANGED
    )
    assert parse_change("benepia bob 1000 resealed", now=1000.0) == AccountChange(
        "benepia", "bob", 0.0, RESEALED
    )
    # A clock behind the database's, or no time at all: still a change, its lag unknown or 0.
    assert parse_change("benepia bob 2000 changed", now=1000.0) == AccountChange(
        "benepia", "bob", 0.0, CHANGED
    )
    assert parse_change("benepia bob", now=1.0) == AccountChange("benepia", "bob", None, CHANGED)
    assert parse_change("benepia bob soon", now=1.0) == AccountChange(
        "benepia", "bob", None, CHANGED
    )
    assert parse_change("", now=1.0) is None
    assert parse_change("benepia", now=1.0) is None

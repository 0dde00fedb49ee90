"""Linked accounts kept in this process, so most points requests skip the database.

Every points request looks up the user's linked accounts: a round trip to PostgreSQL, the
credentials unsealed (AES-GCM) and validated against their provider's schema. Measured on these
machines that was about a sixth of an uncached request's CPU and most of a cached one's, and the
round trip sits on every request's latency. Kept here, a lookup is a dictionary read.

The cache is only as good as what tells it that an account changed. On PostgreSQL every write to
`linked_accounts` notifies every replica (a trigger, migration 0003; app/accounts/change_feed.py
listens), so an unlink answered on one replica reaches the others within one notification delay.
The cache holds nothing unless that listener is connected: when its connection drops, the cache is
emptied and bypassed until it is back and listening again. SQLite has no notifications, and other
processes (a second worker, `accounts import`, `keys rotate`) write the same file, so there is no
cache on SQLite: the lookup there is a read of a local file.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from app.accounts.store import LinkedAccount

Linked = Mapping[str, LinkedAccount]


class AccountCache:
    """Users' linked accounts, least recently used first out, each for at most `ttl` seconds.

    A lookup that started before an invalidation must not store what it read: `epoch` counts
    invalidations, and `put` stores only when none happened since the lookup took its epoch. The
    `ttl` is a backstop for a change the listener could not have missed but somehow did.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, Linked]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        self._epoch = 0
        self._active = False

    @property
    def active(self) -> bool:
        """Whether the cache serves (its change listener is connected and listening)."""
        return self._active

    @property
    def epoch(self) -> int:
        """Taken before a lookup, handed back to `put`."""
        return self._epoch

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> Linked | None:
        """The user's accounts, if held and not older than the ttl."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        stored_at, linked = entry
        if self._clock() - stored_at >= self._ttl:
            del self._entries[user_id]
            return None
        self._entries.move_to_end(user_id)
        return linked

    def put(self, user_id: str, linked: Linked, epoch: int) -> None:
        """Hold what a lookup read, unless something changed since it took `epoch`."""
        if not self._active or epoch != self._epoch:
            return
        self._entries[user_id] = (self._clock(), linked)
        self._entries.move_to_end(user_id)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, user_id: str) -> None:
        """A user's accounts changed: forget them, and refuse lookups already under way."""
        self._epoch += 1
        self._entries.pop(user_id, None)

    def suspend(self) -> None:
        """The listener is gone: hold nothing until it is back (changes may be missed now)."""
        self._active = False
        self._epoch += 1
        self._entries.clear()

    def resume(self) -> None:
        """The listener is listening again: start empty (changes may have been missed)."""
        self._epoch += 1
        self._entries.clear()
        self._active = True

"""Changes to linked accounts made anywhere, as PostgreSQL notifies them (migration 0003).

One asyncpg connection of its own runs `LISTEN points_account_changes` for the life of the
process. Its state drives the account cache: the cache serves only while this connection is up
and listening, and is emptied the moment it is lost (asyncpg's termination callback, or a
keep-alive query that fails or hangs), since notifications sent meanwhile are gone for good. It
reconnects with a growing pause, and the cache starts empty again once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

CHANNEL = "points_account_changes"
CHANGED = "changed"
RESEALED = "resealed"
APPLICATION_NAME = "points-gateway listener"
KEEPALIVE_EVERY = 5.0
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 5.0

log = logging.getLogger("points_gateway.accounts")


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One linked account changed (linked, replaced, unlinked, re-sealed) somewhere."""

    provider: str
    user_id: str
    lag: float | None
    """Seconds from the change to its notice here, or None if the payload had no time."""
    kind: str = CHANGED
    """`changed`, or `resealed` (the same credentials under another key: a statement marked so;
    `keys rotate`'s own re-seals notify nobody since migration 0004)."""


def parse_change(payload: str, now: float) -> AccountChange | None:
    """`<provider> <user_id> <epoch seconds> <kind>`, as the trigger writes it; None when the
    provider or user is missing."""
    parts = payload.split(" ")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    try:
        lag: float | None = max(now - float(parts[2]), 0.0)
    except (IndexError, ValueError):
        lag = None
    kind = RESEALED if parts[3:4] == [RESEALED] else CHANGED
    return AccountChange(parts[0], parts[1], lag, kind)


def _set(event: asyncio.Event, _conn: object) -> None:
    event.set()


class AccountChangeFeed:
    """Listens for account changes; tells the cache when it can and cannot be trusted."""

    def __init__(
        self,
        dsn: str,
        *,
        timeout: float,
        server_settings: dict[str, str] | None = None,
        keepalive_every: float = KEEPALIVE_EVERY,
        reconnect_first: float = RECONNECT_FIRST,
    ) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._settings = {**(server_settings or {}), "application_name": APPLICATION_NAME}
        self._keepalive_every = keepalive_every
        self._reconnect_first = reconnect_first
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def listening(self) -> asyncio.Event:
        """Set while the connection is up and LISTEN has been issued."""
        return self._listening

    def start(
        self,
        *,
        on_change: Callable[[AccountChange], None],
        on_reset: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        """Run until `aclose`. Every change goes to `on_change`; `on_reset` when listening starts
        (what was held may be stale), `on_lost` when the connection is gone."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(on_change, on_reset, on_lost), name="account change feed"
            )

    async def _run(
        self,
        on_change: Callable[[AccountChange], None],
        on_reset: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        pause = self._reconnect_first

        def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            change = parse_change(str(payload), time.time())
            if change is None:
                log.warning("account change notification not understood; account cache emptied")
                on_reset()
                return
            on_change(change)

        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=self._timeout, server_settings=self._settings
                )
                lost = asyncio.Event()
                conn.add_termination_listener(partial(_set, lost))
                await conn.add_listener(CHANNEL, notified)
                self._listening.set()
                on_reset()
                pause = self._reconnect_first
                log.info("listening for account changes")
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._keepalive_every)
                        break
                    # A connection can die without a word (a dropped network path): ask.
                    await conn.execute("SELECT 1", timeout=self._timeout)
                log.warning("account change listener disconnected; account cache off until back")
            except Exception as exc:  # never let the feed die: the cache stays off meanwhile
                log.warning(
                    "account change listener lost (%s); account cache off until it is back",
                    type(exc).__name__,
                )
            finally:
                self._listening.clear()
                on_lost()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX)

    async def aclose(self) -> None:
        """Stop listening (the cache is left off)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def open_change_feed(
    url: str, *, timeout: float, pg_schema: str | None = None
) -> AccountChangeFeed | None:
    """The feed for a PostgreSQL URL (no I/O until started); None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    settings = {"search_path": pg_schema} if pg_schema else None
    return AccountChangeFeed(dsn, timeout=timeout, server_settings=settings)

"""Re-sealing stored credentials under the current key: one pass, resumable, safe while serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, literal, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.errors import CredentialsUnreadable

# One statement for the whole batch on PostgreSQL: each row replaced only if still as it was read.
_PG_RESEAL = text(
    "UPDATE linked_accounts AS a SET sealed = v.new, key_id = :key_id "
    "FROM unnest(CAST(:user_ids AS text[]), CAST(:providers AS text[]), "
    "CAST(:olds AS text[]), CAST(:news AS text[])) AS v(user_id, provider, old, new) "
    "WHERE a.user_id = v.user_id AND a.provider = v.provider AND a.sealed = v.old"
)
_RESEAL = (
    update(t)
    .where(
        and_(
            t.c.user_id == bindparam("b_user_id"),
            t.c.provider == bindparam("b_provider"),
            t.c.sealed == bindparam("b_old"),
        )
    )
    .values(sealed=bindparam("b_new"), key_id=bindparam("b_key_id"))
)


@dataclass
class RotationReport:
    """What one rotation run did."""

    resealed: int = 0
    skipped_changed: int = 0
    unreadable: int = 0

    @property
    def rows(self) -> int:
        """Rows looked at so far."""
        return self.resealed + self.skipped_changed + self.unreadable


async def pending(engine: AsyncEngine, keyring: Keyring) -> int:
    """How many rows are not sealed under the current key (the progress bar's total)."""
    query = select(func.count()).select_from(t).where(t.c.key_id != keyring.current_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def rotate(
    engine: AsyncEngine,
    keyring: Keyring,
    *,
    batch: int = 200,
    max_rate: float | None = None,
    on_batch: Callable[[RotationReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RotationReport:
    """Re-seal every row not under the current key, `batch` rows per transaction.

    One pass in primary-key order: each batch starts after the last row of the one before, so
    the run is linear in the table and no row is read twice (an unreadable one is counted once).
    Each row is replaced only if it is unchanged since it was read, so a concurrent link (sealed
    under the current key by a gateway that holds it) always wins. Stopped anywhere, a rerun
    finds only what is left. `on_batch` sees the running totals after each commit.

    `max_rate` (rows per second) paces the run: unpaced, a rotation took a core of its own and
    as much of PostgreSQL's, and on a shared host the serving p99 rose 3.6x (bench/rotate_bench.py).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = RotationReport()
    current = keyring.current_id
    after: tuple[str, str] | None = None
    started = clock()
    while True:
        query = select(t.c.user_id, t.c.provider, t.c.sealed).where(t.c.key_id != current)
        if after is not None:
            position = tuple_(literal(after[0]), literal(after[1]))
            query = query.where(tuple_(t.c.user_id, t.c.provider) > position)
        query = query.order_by(t.c.user_id, t.c.provider).limit(batch)
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Tells migration 0004's trigger that the credentials stay the same, so no replica
                # is notified: replicas cache the opened credentials, never the sealed text.
                await conn.execute(text("SET LOCAL points.change = 'resealed'"))
            rows = [(u, p, s) for u, p, s in await conn.execute(query)]
            if not rows:
                return report
            after = (rows[-1][0], rows[-1][1])
            await _reseal(conn, keyring, rows, report)
        if on_batch is not None:
            on_batch(report)
        if max_rate:
            ahead = report.rows / max_rate - (clock() - started)
            if ahead > 0:
                await sleep(ahead)


async def _reseal(
    conn: AsyncConnection,
    keyring: Keyring,
    rows: Sequence[tuple[str, str, str]],
    report: RotationReport,
) -> None:
    fresh: list[tuple[str, str, str, str]] = []
    for user_id, provider, sealed in rows:
        try:
            plain = keyring.unseal(sealed, user_id=user_id, provider=provider)
        except CredentialsUnreadable:
            report.unreadable += 1
            continue
        fresh.append(
            (user_id, provider, sealed, keyring.seal(plain, user_id=user_id, provider=provider))
        )
    if not fresh:
        return
    if conn.dialect.name == "postgresql":
        user_ids, providers, olds, news = (list(column) for column in zip(*fresh, strict=True))
        result = await conn.execute(
            _PG_RESEAL,
            {
                "key_id": keyring.current_id,
                "user_ids": user_ids,
                "providers": providers,
                "olds": olds,
                "news": news,
            },
        )
    else:
        # SQLite sums an executemany's row counts.
        result = await conn.execute(
            _RESEAL,
            [
                {
                    "b_user_id": u,
                    "b_provider": p,
                    "b_old": old,
                    "b_new": new,
                    "b_key_id": keyring.current_id,
                }
                for u, p, old, new in fresh
            ],
        )
    report.resealed += result.rowcount
    report.skipped_changed += len(fresh) - result.rowcount

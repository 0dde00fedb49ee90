"""Re-sealing stored credentials under the current key: resumable, safe while serving."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.errors import CredentialsUnreadable


@dataclass
class RotationReport:
    """What one rotation run did."""

    resealed: int = 0
    skipped_changed: int = 0
    unreadable: int = 0


async def rotate(engine: AsyncEngine, keyring: Keyring, *, batch: int = 200) -> RotationReport:
    """Re-seal every row not under the current key, `batch` rows per transaction.

    Each row is replaced only if it is unchanged since it was read, so a concurrent link (which
    seals under the current key anyway) always wins; running it again resumes where it stopped.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = RotationReport()
    current = keyring.current_id
    skip: set[tuple[str, str]] = set()
    while True:
        query = (
            select(t.c.user_id, t.c.provider, t.c.sealed)
            .where(t.c.key_id != current)
            .order_by(t.c.user_id, t.c.provider)
            .limit(batch + len(skip))
        )
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # The change notifications say `resealed`: the same credentials, so replicas keep
                # their cached balances (migration 0003).
                await conn.execute(text("SET LOCAL points.change = 'resealed'"))
            rows = [r for r in (await conn.execute(query)).all() if (r[0], r[1]) not in skip]
            if not rows:
                return report
            for user_id, provider, sealed in rows[:batch]:
                try:
                    plain = keyring.unseal(sealed, user_id=user_id, provider=provider)
                except CredentialsUnreadable:
                    report.unreadable += 1
                    skip.add((user_id, provider))
                    continue
                resealed = keyring.seal(plain, user_id=user_id, provider=provider)
                result = await conn.execute(
                    update(t)
                    .where(
                        and_(t.c.user_id == user_id, t.c.provider == provider, t.c.sealed == sealed)
                    )
                    .values(sealed=resealed, key_id=current)
                )
                if result.rowcount:
                    report.resealed += 1
                else:
                    report.skipped_changed += 1

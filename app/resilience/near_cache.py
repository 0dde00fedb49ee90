"""Redis with an in-process tier in front: what Redis cannot answer in time is answered here."""

from __future__ import annotations

from collections.abc import Sequence

from app.resilience.cache import CachedBalance, MemoryBalanceCache, RedisBalanceCache


class NearCache:
    """The shared cache (Redis) first, this process's copy of what it saw when Redis fails.

    Every balance this process writes or reads from Redis is kept here too (bounded, LRU), so a
    Redis read that fails or is skipped still finds the value, and stale-if-error keeps
    covering a provider's outage while Redis stumbles. While Redis answers it is the truth: a
    miss there drops the copy here (another replica unlinked, or the entry expired), so the
    tiers never disagree about what is cached. The fetcher judges freshness by each value's
    `stored_at`, whichever tier it came from; `keep_for` bounds how long a copy is held.
    """

    def __init__(self, near: MemoryBalanceCache, far: RedisBalanceCache, *, keep_for: float):
        self._near = near
        self._far = far
        self._keep_for = keep_for

    @property
    def healthy(self) -> bool:
        return self._far.healthy

    async def get(self, key: str) -> CachedBalance | None:
        value, answered = await self._far.read(key)
        if not answered:
            return await self._near.get(key)
        if value is None:
            await self._near.delete([key])
        else:
            await self._near.set(key, value, keep_for=self._keep_for)
        return value

    async def set(self, key: str, value: CachedBalance, *, keep_for: float) -> None:
        await self._near.set(key, value, keep_for=keep_for)
        await self._far.set(key, value, keep_for=keep_for)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._near.delete(keys)
        await self._far.delete(keys)

    async def aclose(self) -> None:
        await self._near.aclose()
        await self._far.aclose()

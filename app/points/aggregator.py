"""Fan-out to the user's linked providers, under one deadline, merged in a stable order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from app.accounts.store import AccountStore, LinkedAccount
from app.errors import AccountNotLinked, GatewayError, StoreUnavailable
from app.observability import events
from app.points.fetcher import BalanceFetcher, error_entry
from app.points.models import Balance, BalanceStatus, PointsAnswer
from app.providers.base import CallContext
from app.providers.registry import Registry


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOptions:
    """How one request wants to be answered."""

    deadline: float
    fresh: bool = False


class Aggregator:
    """Answers points queries: which providers, how long to wait, and what to merge."""

    def __init__(
        self,
        registry: Registry,
        store: AccountStore,
        fetcher: BalanceFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._store = store
        self.fetcher = fetcher
        self._clock = clock

    async def user_points(
        self,
        user_id: str,
        call: CallContext,
        options: QueryOptions,
        *,
        only: Sequence[str] | None = None,
    ) -> PointsAnswer:
        """Every linked provider's entry (narrowed by `only`), fetched concurrently."""
        deadline_at = self._clock() + options.deadline
        if only is not None:
            for name in only:
                self._registry.plugin(name)  # an unknown name is 404 unknown_provider
        try:
            linked = await self._store.linked(user_id)
        except StoreUnavailable:
            return await self._from_cache(user_id, only)
        names = [
            n for n in self._registry.names() if (n in only if only is not None else n in linked)
        ]
        entries = await asyncio.gather(
            *(self._entry(user_id, n, linked.get(n), call, deadline_at, options) for n in names)
        )
        answered = [e.provider for e in entries if e.status is BalanceStatus.OK and not e.cached]
        if answered:
            self._store.note_fetched(user_id, answered)
        complete = all(e.status == "ok" for e in entries)
        return PointsAnswer(user_id=user_id, complete=complete, balances=list(entries))

    async def linked_balance(
        self, user_id: str, provider: str, call: CallContext, options: QueryOptions
    ) -> Balance:
        """One linked account's entry; an unknown provider or unlinked account raises."""
        deadline_at = self._clock() + options.deadline
        self._registry.plugin(provider)  # an unknown name is 404 unknown_provider
        try:
            account = (await self._store.linked(user_id)).get(provider)
        except StoreUnavailable:
            cached = await self.fetcher.cached_balance(user_id, provider)
            if cached is None:
                raise
            return cached
        if account is None:
            raise AccountNotLinked(f"{user_id} has no {provider} account linked", provider=provider)
        entry = await self._entry(user_id, provider, account, call, deadline_at, options)
        if entry.status == "ok" and not entry.cached:
            self._store.note_fetched(user_id, [provider])
        return entry

    async def account_balance(
        self, provider: str, account: BaseModel, call: CallContext, options: QueryOptions
    ) -> Balance:
        """The entry of an account the caller holds (one-shot): nothing is stored or cached."""
        budget = min(self._registry.adapter(provider).timeout, options.deadline)
        return await self.fetcher.account_balance(provider, account, call, budget=budget)

    async def forget(self, user_id: str, provider: str) -> None:
        """Drop what is cached for an account that was unlinked or replaced."""
        await self.fetcher.forget(user_id, provider)

    async def _entry(
        self,
        user_id: str,
        name: str,
        account: LinkedAccount | None,
        call: CallContext,
        deadline_at: float,
        options: QueryOptions,
    ) -> Balance:
        if account is None:
            events.provider_answered(name, AccountNotLinked.code, "none")
            return error_entry(name, AccountNotLinked(f"No {name} account is linked"))
        if isinstance(account, GatewayError):
            events.provider_answered(name, account.code, "none")
            return error_entry(name, account)
        budget = min(self._registry.adapter(name).timeout, deadline_at - self._clock())
        return await self.fetcher.linked_balance(
            user_id, name, account, call, budget=budget, fresh=options.fresh
        )

    async def _from_cache(self, user_id: str, only: Sequence[str] | None) -> PointsAnswer:
        # The store is down, so which providers are linked is unknown: answer what the cache holds.
        names = list(only) if only is not None else self._registry.names()
        found = [await self.fetcher.cached_balance(user_id, n) for n in names]
        entries = [e for e in found if e is not None]
        if not entries:
            raise StoreUnavailable(
                "The account store did not answer and nothing is cached for this user.",
                retry_after=2,
            )
        return PointsAnswer(user_id=user_id, complete=False, balances=entries)

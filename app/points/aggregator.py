"""Fan-out to the user's linked programs, under one deadline, merged in a stable order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from app.accounts.store import AccountStore, LinkedAccount
from app.errors import (
    AccountNotLinked,
    GatewayError,
    InternalError,
    ProviderError,
    UpstreamTimeout,
)
from app.points.models import Balance, PointsAnswer
from app.problems import problem_from
from app.providers.base import CallContext, PointsProvider
from app.providers.registry import Registry

log = logging.getLogger("points_gateway.aggregator")


def error_entry(provider: str, error: GatewayError) -> Balance:
    """The answer entry of a program that failed."""
    error.provider = error.provider or provider
    return Balance(
        provider=provider,
        status="error",
        error=problem_from(error, instance=None, request_id=None),
    )


class Aggregator:
    """Answers points queries: which programs, how long to wait, and what to merge."""

    def __init__(
        self,
        registry: Registry,
        store: AccountStore,
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._store = store
        self._deadline = deadline
        self._clock = clock

    async def user_points(
        self, user_id: str, call: CallContext, *, only: Sequence[str] | None = None
    ) -> PointsAnswer:
        """Every linked program's entry (narrowed by `only`), fetched concurrently."""
        deadline_at = self._clock() + self._deadline
        linked = await self._store.linked(user_id)
        if only is None:
            names = [n for n in self._registry.names() if n in linked]
        else:
            for name in only:
                self._provider(name)
            names = [n for n in self._registry.names() if n in only]
        entries = await asyncio.gather(
            *(self._entry(name, linked.get(name), call, deadline_at) for name in names)
        )
        answered = [e.provider for e in entries if e.status == "ok"]
        if answered:
            self._store.note_fetched(user_id, answered)
        complete = len(answered) == len(entries)
        return PointsAnswer(user_id=user_id, complete=complete, balances=list(entries))

    async def one(self, user_id: str, provider: str, call: CallContext) -> Balance:
        """One program's entry; an unknown provider or unlinked account raises."""
        deadline_at = self._clock() + self._deadline
        self._provider(provider)
        account = (await self._store.linked(user_id)).get(provider)
        if account is None:
            raise AccountNotLinked(f"{user_id} has no {provider} account linked", provider=provider)
        entry = await self._entry(provider, account, call, deadline_at)
        if entry.status == "ok":
            self._store.note_fetched(user_id, [provider])
        return entry

    async def one_shot(self, provider: str, account: BaseModel, call: CallContext) -> Balance:
        """One program's entry for credentials the caller holds; nothing is stored."""
        self._provider(provider)
        return await self._entry(provider, account, call, self._clock() + self._deadline)

    def _provider(self, name: str) -> PointsProvider:
        return self._registry.require(name)[1]

    async def _entry(
        self, name: str, account: LinkedAccount | None, call: CallContext, deadline_at: float
    ) -> Balance:
        if account is None:
            return error_entry(name, AccountNotLinked(f"No {name} account is linked"))
        if isinstance(account, GatewayError):
            return error_entry(name, account)
        provider = self._provider(name)
        budget = min(provider.timeout, deadline_at - self._clock())
        try:
            async with asyncio.timeout(max(budget, 0)):
                balance = await provider.fetch_balance(account, call)
        except TimeoutError:
            return error_entry(
                name, UpstreamTimeout(f"{name} did not answer within {budget:.2f} s")
            )
        except ProviderError as exc:
            return error_entry(name, exc)
        except Exception:
            log.exception(
                "provider %s failed unexpectedly", name, extra={"request_id": call.request_id}
            )
            return error_entry(
                name, InternalError("The gateway failed while asking this provider.")
            )
        return Balance(
            provider=name,
            status="ok",
            points=balance.points,
            unit=balance.unit,
            as_of=balance.as_of,
        )

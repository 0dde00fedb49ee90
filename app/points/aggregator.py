"""Fan-out to the user's linked programs, under one deadline, merged in a stable order."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from app.accounts.directory import AccountDirectory
from app.errors import (
    AccountNotLinked,
    GatewayError,
    InternalError,
    ProviderError,
    UnknownProvider,
    UpstreamTimeout,
)
from app.points.models import Balance, PointsAnswer
from app.problems import problem_from
from app.providers.base import CallContext, PointsProvider
from app.providers.registry import Registry

log = logging.getLogger("points_gateway.aggregator")
_NAME = re.compile(r"[a-z0-9_-]{1,64}")


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
        directory: AccountDirectory,
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._directory = directory
        self._deadline = deadline
        self._clock = clock

    async def user_points(
        self, user_id: str, call: CallContext, *, only: Sequence[str] | None = None
    ) -> PointsAnswer:
        """Every linked program's entry (narrowed by `only`), fetched concurrently."""
        deadline_at = self._clock() + self._deadline
        linked = await self._directory.linked(user_id)
        if only is None:
            names = [n for n in self._registry.names() if n in linked]
        else:
            for name in only:
                self._provider(name)
            names = [n for n in self._registry.names() if n in only]
        entries = await asyncio.gather(
            *(self._entry(name, linked.get(name), call, deadline_at) for name in names)
        )
        complete = all(e.status == "ok" for e in entries)
        return PointsAnswer(user_id=user_id, complete=complete, balances=list(entries))

    async def one(self, user_id: str, provider: str, call: CallContext) -> Balance:
        """One program's entry; an unknown provider or unlinked account raises."""
        deadline_at = self._clock() + self._deadline
        self._provider(provider)
        account = (await self._directory.linked(user_id)).get(provider)
        if account is None:
            raise AccountNotLinked(f"{user_id} has no {provider} account linked", provider=provider)
        return await self._entry(provider, account, call, deadline_at)

    def _provider(self, name: str) -> PointsProvider:
        provider = self._registry.get(name)
        if provider is None:
            known = ", ".join(self._registry.names()) or "none"
            shown = repr(name) if _NAME.fullmatch(name) else "by that name"
            raise UnknownProvider(f"No provider {shown} (configured: {known}).")
        return provider

    async def _entry(
        self, name: str, account: BaseModel | None, call: CallContext, deadline_at: float
    ) -> Balance:
        if account is None:
            return error_entry(name, AccountNotLinked(f"No {name} account is linked"))
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

"""One provider's balance for one account: cache, single-flight, breaker, bulkhead, retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from pydantic import BaseModel

from app.errors import (
    GatewayError,
    InternalError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamTimeout,
)
from app.observability import events
from app.points.models import Balance, BalanceStatus
from app.problems import problem_from
from app.providers.base import CallContext, ProviderBalance
from app.providers.registry import Registry
from app.resilience.breaker import BreakerPolicy, CircuitBreaker
from app.resilience.bulkhead import Bulkhead
from app.resilience.cache import BalanceCache, CachedBalance
from app.resilience.retry import RetryPolicy, call_with_retries
from app.resilience.retry_budget import RetryBudget
from app.resilience.single_flight import SingleFlight
from app.security.secret_scrub import secret_values
from app.settings import CacheSettings, ResilienceSettings

log = logging.getLogger("points_gateway.fetcher")
WHOLE_TIMEOUT_SLACK = 0.001


def error_entry(provider: str, error: GatewayError) -> Balance:
    """The answer entry of a provider that failed."""
    error.provider = error.provider or provider
    return Balance(
        provider=provider,
        status=BalanceStatus.ERROR,
        error=problem_from(error, instance=None, request_id=None),
    )


def _ok_entry(
    provider: str, value: ProviderBalance | CachedBalance, *, cached: bool, stale: bool
) -> Balance:
    return Balance(
        provider=provider,
        status=BalanceStatus.OK,
        points=value.points,
        unit=value.unit,
        as_of=value.as_of,
        cached=cached,
        stale=stale,
        details=value.details,
    )


def cache_key(provider: str, user_id: str) -> str:
    """A linked account's cache key: ids only, never anything derived from a credential."""
    return f"{provider}:{user_id}"


@dataclass(slots=True)
class _Guard:
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    budget: RetryBudget
    state: str = "closed"  # the breaker state last reported (logs, metrics)


class BalanceFetcher:
    """Fetches balances through the resilience layers; never raises for provider trouble."""

    def __init__(
        self,
        registry: Registry,
        cache: BalanceCache,
        *,
        resilience: ResilienceSettings,
        cache_settings: CacheSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self.cache = cache
        self._cache_settings = cache_settings
        self._clock = clock
        self._wall = wall_clock
        self._retry = RetryPolicy(
            attempts=resilience.retry_attempts,
            wait_initial=resilience.retry_wait_initial,
            wait_max=resilience.retry_wait_max,
        )
        policy = BreakerPolicy(
            consecutive_failures=resilience.breaker_consecutive_failures,
            failure_rate=resilience.breaker_failure_rate,
            window=resilience.breaker_window,
            min_calls=resilience.breaker_min_calls,
            open_for=resilience.breaker_open_seconds,
        )
        self._guards = {
            name: _Guard(
                CircuitBreaker(name, policy, clock=clock),
                Bulkhead(name, resilience.provider_max_in_flight),
                RetryBudget(ratio=resilience.retry_budget_ratio),
            )
            for name in registry.names()
        }
        self._flights: SingleFlight[ProviderBalance] = SingleFlight(clock)
        self._generations: dict[str, int] = {}
        self._ttls = {
            name: cache_settings.ttl_for(name, registry.plugin(name).cache_ttl)
            for name in registry.names()
        }

    def breaker(self, provider: str) -> CircuitBreaker:
        """The circuit breaker of one provider."""
        return self._guards[provider].breaker

    async def linked_balance(
        self,
        user_id: str,
        provider: str,
        account: BaseModel,
        call: CallContext,
        *,
        budget: float,
        fresh: bool = False,
    ) -> Balance:
        """A linked account's entry: fresh cache, else fetched (shared), else stale, else error."""
        key = cache_key(provider, user_id)
        cached = await self.cache.get(key)
        age = self._wall() - cached.stored_at if cached else None
        if cached and age is not None and not fresh and age < self._ttls[provider]:
            events.cache_served(provider, stale=False, age=age)
            return _ok_entry(provider, cached, cached=True, stale=False)
        events.cache_missed(provider)
        cache: events.CacheState = "refresh" if fresh else "miss"
        whole = self._is_whole(provider, budget)
        ends_at = self._clock() + max(budget, 0)
        # Keyed by generation: after a re-link nobody joins a fetch for the old account.
        generation = self._generations.get(key, 0)
        # Whether this request ran the call: its attempts are noted in the request that runs them
        # only, so a request that joined another's call notes its outcome as `coalesced`.
        ran = False

        def fetch() -> Coroutine[object, object, ProviderBalance]:
            nonlocal ran
            ran = True
            # What is left of the budget when it starts: a caller whose shared call was
            # cancelled under it starts its own, still within its deadline.
            return self._fetch_and_cache(
                key, generation, provider, account, call, ends_at - self._clock(), cache, whole
            )

        try:
            balance = await self._flights.do(f"{key}#{generation}", fetch, ends_at=ends_at)
        except (TimeoutError, ProviderError) as exc:
            error = exc if isinstance(exc, ProviderError) else _timeout(provider, budget)
            if cached and age is not None and self._stale_allowed(provider, age, error):
                events.cache_served(provider, stale=True, age=age)
                return _ok_entry(provider, cached, cached=True, stale=True)
            events.provider_answered(provider, error.code, "none" if ran else "coalesced")
            return error_entry(provider, error)
        except Exception:
            events.provider_answered(provider, InternalError.code, "none" if ran else "coalesced")
            return _unexpected(provider)
        if not ran:
            events.provider_answered(provider, "ok", "coalesced")
        return _ok_entry(provider, balance, cached=False, stale=False)

    async def cached_balance(self, user_id: str, provider: str) -> Balance | None:
        """Whatever the cache still holds for a linked account, fresh or within stale-if-error."""
        cached = await self.cache.get(cache_key(provider, user_id))
        if cached is None:
            return None
        age = self._wall() - cached.stored_at
        stale = age >= self._ttls[provider]
        if stale and age >= self._keep_for(provider):
            return None
        events.cache_served(provider, stale=stale, age=age)
        return _ok_entry(provider, cached, cached=True, stale=stale)

    async def account_balance(
        self, provider: str, account: BaseModel, call: CallContext, *, budget: float
    ) -> Balance:
        """The entry of an account the caller holds: guarded, but never cached or shared."""
        try:
            balance = await self._with_deadline(
                provider,
                budget,
                self._through_guards(provider, account, call, budget, "none"),
                whole=self._is_whole(provider, budget),
            )
        except TimeoutError:
            events.provider_answered(provider, UpstreamTimeout.code, "none")
            return error_entry(provider, _timeout(provider, budget))
        except ProviderError as exc:
            events.provider_answered(provider, exc.code, "none")
            return error_entry(provider, exc)
        except Exception:
            events.provider_answered(provider, InternalError.code, "none")
            return _unexpected(provider)
        return _ok_entry(provider, balance, cached=False, stale=False)

    async def forget(self, user_id: str, provider: str) -> None:
        """Drop a linked account's cached balance (it was unlinked or replaced)."""
        key = cache_key(provider, user_id)
        # A fetch already in flight for the old credentials must not write its answer back.
        if len(self._generations) > 100_000:
            self._generations.clear()
        self._generations[key] = self._generations.get(key, 0) + 1
        await self.cache.delete([key])

    def _keep_for(self, provider: str) -> float:
        return self._ttls[provider] + self._cache_settings.stale_if_error

    def _stale_allowed(self, provider: str, age: float, error: ProviderError) -> bool:
        # A refusal is about the account itself: an old balance would hide it, so it is not served.
        return not isinstance(error, ProviderRejected) and age < self._keep_for(provider)

    async def _fetch_and_cache(
        self,
        key: str,
        generation: int,
        provider: str,
        account: BaseModel,
        call: CallContext,
        budget: float,
        cache: events.CacheState,
        whole: bool,
    ) -> ProviderBalance:
        # Runs in the task of the caller that started it and lives as long as that caller waits,
        # so no upstream call outlives every deadline; a later caller joins it as it is
        # (SingleFlight starts a new call rather than hand a newcomer one about to be cut off).
        balance = await self._with_deadline(
            provider,
            budget,
            self._through_guards(provider, account, call, budget, cache),
            whole=whole,
        )
        if self._generations.get(key, 0) == generation:
            value = CachedBalance(
                balance.points, balance.unit, balance.as_of, self._wall(), balance.details
            )
            await self.cache.set(key, value, keep_for=self._keep_for(provider))
        return balance

    def _is_whole(self, provider: str, budget: float) -> bool:
        """Whether a call with this budget gives the provider its whole timeout.

        Decided once, when the caller's budget is set: re-read off the clock when the call
        starts, a busy machine can leave the budget a millisecond short of the timeout.
        """
        return budget >= self._registry.adapter(provider).timeout - WHOLE_TIMEOUT_SLACK

    async def _with_deadline(
        self,
        provider: str,
        budget: float,
        call: Coroutine[object, object, ProviderBalance],
        *,
        whole: bool,
    ) -> ProviderBalance:
        budget = max(budget, 0)
        deadline = events.call_deadline.set(asyncio.get_running_loop().time() + budget)
        try:
            async with asyncio.timeout(budget):
                return await call
        except TimeoutError:
            # Only a provider that used its whole timeout is unwell; a caller's short deadline
            # says nothing about it.
            if whole:
                guard = self._guards[provider]
                guard.breaker.record_failure()
                _report_breaker(provider, guard)
            raise
        finally:
            events.call_deadline.reset(deadline)

    async def _through_guards(
        self,
        provider: str,
        account: BaseModel,
        call: CallContext,
        budget: float,
        cache: events.CacheState,
    ) -> ProviderBalance:
        adapter = self._registry.adapter(provider)
        guard = self._guards[provider]
        try:
            guard.breaker.before_call()
        except ProviderUnavailable:
            events.upstream_skipped(provider, "circuit_open")
            raise
        finally:
            _report_breaker(provider, guard)
        deadline_at = self._clock() + budget
        attempts = 0

        async def attempt() -> ProviderBalance:
            nonlocal attempts
            attempts += 1
            with events.upstream_attempt(provider, attempts, cache):
                try:
                    return await adapter.fetch_balance(account, call)
                except Exception as exc:
                    # The one way out of an adapter: an upstream's echo of a secret is masked
                    # before the attempt's log line and span, the answer or any later log see it.
                    scrubber = self._registry.scrubber.with_values(secret_values(account))
                    scrubber.exception(exc)
                    raise

        try:
            with guard.bulkhead.slot():
                balance = await call_with_retries(
                    attempt,
                    policy=self._retry,
                    budget=guard.budget,
                    deadline_at=deadline_at,
                    clock=self._clock,
                )
        except ProviderRejected:
            guard.breaker.record_success()  # the provider answered: it is healthy
            _report_breaker(provider, guard)
            raise
        except ProviderError as exc:
            if exc.code != "provider_unavailable":
                guard.breaker.record_failure()
            else:
                if not attempts:
                    events.upstream_skipped(provider, "bulkhead_full")
                guard.breaker.release_probe()
            _report_breaker(provider, guard)
            raise
        except BaseException:
            guard.breaker.release_probe()
            raise
        guard.breaker.record_success()
        _report_breaker(provider, guard)
        return balance


def _report_breaker(provider: str, guard: _Guard) -> None:
    """Log and count a breaker state change (compared with the state last reported)."""
    state = guard.breaker.state
    if state != guard.state:
        events.breaker_changed(provider, guard.state, state)
        guard.state = state


def _unexpected(provider: str) -> Balance:
    log.exception("provider %s failed unexpectedly", provider)
    return error_entry(provider, InternalError("The gateway failed while asking this provider."))


def _timeout(provider: str, budget: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"{provider} did not answer within {max(budget, 0):.2f} s")

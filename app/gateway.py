"""The long-lived objects of one gateway instance: validated up front, built by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import httpx
from limits import parse as parse_limit
from pydantic import BaseModel

from app.accounts.account_cache import AccountCache
from app.accounts.change_feed import RESEALED, AccountChange, open_change_feed
from app.accounts.engine import build_engine, sqlite_file
from app.accounts.lookups import open_lookups
from app.accounts.migrate import schema_problem, schema_state
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.accounts.store import AccountStore
from app.errors import ConfigurationError, StoreUnavailable
from app.observability.metrics import GatewayMetrics
from app.outbound.factory import build_upstream
from app.outbound.upstream import Upstream, UpstreamConfig
from app.points.aggregator import Aggregator
from app.points.fetcher import BalanceFetcher
from app.providers.base import ProviderPlugin
from app.providers.registry import Registry, configure, discover_plugins
from app.resilience.breaker import BreakerSnapshot
from app.resilience.cache import BalanceCache, MemoryBalanceCache, RedisBalanceCache
from app.resilience.near_cache import NearCache
from app.security.authenticator import Authenticator
from app.security.client_address import ClientAddresses
from app.security.failed_auth import FailedAuthLimit
from app.security.rate_limit import RateLimiter
from app.security.service import Security
from app.settings import Settings

log = logging.getLogger("points_gateway")
JWKS_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """Validated settings, ready to build from; making one does no I/O."""

    settings: Settings
    providers: dict[str, tuple[ProviderPlugin, BaseModel]]
    keyring: Keyring | None
    store: AccountStore | None
    known: dict[str, ProviderPlugin]
    """Every provider installed, configured or not (each has its routes)."""

    def plugins(self) -> dict[str, ProviderPlugin]:
        """The configured providers' plugins by name."""
        return {name: plugin for name, (plugin, _) in self.providers.items()}


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the routes reach through `get_gateway`."""

    settings: Settings
    registry: Registry
    store: AccountStore
    aggregator: Aggregator
    security: Security
    jwks: Upstream | None = None
    _forgetting: set[asyncio.Task[None]] = field(default_factory=set)

    def circuits(self) -> dict[str, BreakerSnapshot]:
        """Each served provider's circuit breaker, as it stands now."""
        fetcher = self.aggregator.fetcher
        return {name: fetcher.breaker(name).snapshot() for name in self.registry.names()}

    @property
    def cache_healthy(self) -> bool:
        """False while the shared balance cache (Redis) is being bypassed."""
        return self.aggregator.fetcher.cache.healthy

    def watch_accounts(self, metrics: GatewayMetrics) -> None:
        """Follow account changes other replicas and processes make: each one's cached balance
        is dropped here too (and a fetch in flight for the old account does not write back)."""

        def changed(change: AccountChange) -> None:
            if change.lag is not None:
                metrics.account_change_lag.observe(change.lag)
            if change.kind == RESEALED:
                return  # the same credentials under another key: the balance still holds
            task = asyncio.ensure_future(self._forget(change))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

        self.store.watch(changed)

    async def _forget(self, change: AccountChange) -> None:
        try:
            await self.aggregator.forget(change.user_id, change.provider)
        except Exception as exc:  # the balance cache's own failures are logged and counted
            log.warning("could not drop a changed account's balance (%s)", type(exc).__name__)

    async def aclose(self) -> None:
        """Close outbound connections, then the cache and the store."""
        if self.jwks is not None:
            await self.jwks.aclose()
        await self.registry.aclose()
        await self.aggregator.fetcher.cache.aclose()
        await self.store.aclose()


def plan_gateway(settings: Settings, *, store: AccountStore | None = None) -> GatewayPlan:
    """Check the settings; raises ConfigurationError naming every setting to fix, at once."""
    problems: list[str] = []
    known: dict[str, ProviderPlugin] = {}
    providers: dict[str, tuple[ProviderPlugin, BaseModel]] = {}
    keyring = None
    try:
        known = discover_plugins(settings.providers_dir)
        providers = configure(
            settings.enabled_providers, settings.providers, known, allow_http=settings.sandbox
        )
    except ConfigurationError as exc:
        problems.extend(exc.problems)
    checks: list[Callable[[], None]] = [
        partial(Authenticator.check, settings.auth),
        partial(_check_jwks_url, settings),
        partial(_check_limits, settings),
    ]
    for check in checks:
        try:
            check()
        except ConfigurationError as exc:
            problems.extend(exc.problems)
    if store is None:
        try:
            keyring = _keyring(settings)
        except ConfigurationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigurationError(*problems)
    return GatewayPlan(settings, providers, keyring, store, known)


def _check_limits(settings: Settings) -> None:
    for name, limit in (
        ("RATE", settings.limits.rate),
        ("FAILED_AUTH_RATE", settings.limits.failed_auth_rate),
    ):
        if limit is not None:
            try:
                parse_limit(limit)
            except ValueError as exc:
                raise ConfigurationError(f"POINTS_LIMITS__{name}: {exc}") from exc


def _keyring(settings: Settings) -> Keyring:
    if settings.secret_keys is None:
        raise ConfigurationError(
            "POINTS_SECRET_KEYS is required to store provider credentials; "
            "create one with `points-gateway keys generate`"
        )
    return Keyring.parse(settings.secret_keys.get_secret_value())


def _check_jwks_url(settings: Settings) -> None:
    # The URL is not echoed: it may carry credentials.
    url = settings.auth.jwks_url
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("POINTS_AUTH__JWKS_URL: must be an absolute https URL")
    if parts.scheme == "http" and not settings.sandbox:
        raise ConfigurationError(
            "POINTS_AUTH__JWKS_URL: must use https (plain http only with POINTS_SANDBOX=true)"
        )


async def open_store(plan: GatewayPlan) -> AccountStore:
    """The configured store; refuses to start on a missing schema or a missing sealing key."""
    if plan.store is not None:
        return plan.store
    assert plan.keyring is not None
    settings = plan.settings
    url, timeout = settings.database_url_value(), settings.database_timeout
    refuse_a_missing_sqlite_file(url)
    engine = build_engine(url, timeout=timeout)
    lookups = open_lookups(url, timeout=timeout)
    changes = open_change_feed(url, timeout=timeout) if settings.account_cache.enabled else None
    cached = settings.account_cache
    store = SqlAccountStore(
        engine,
        plan.keyring,
        plan.plugins(),
        timeout=timeout,
        lookups=lookups,
        changes=changes,
        cache=AccountCache(max_entries=cached.max_entries, ttl=cached.ttl),
    )
    try:
        problem = schema_problem(await schema_state(engine))
        if problem is not None:
            await store.aclose()
            raise ConfigurationError(problem)
        await store.check_ready()
    except (StoreUnavailable, OSError) as exc:
        # Serve anyway: points routes answer 503 store_unavailable until the database is back.
        log.warning("account store unreachable at start (%s); serving degraded", type(exc).__name__)
    except ConfigurationError:
        await store.aclose()
        raise
    return store


def refuse_a_missing_sqlite_file(url: str) -> None:
    # Only `db upgrade` creates the database: a start that fails leaves no empty file behind.
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"no account database at {path}: run `points-gateway db upgrade` to create it "
            "(or set POINTS_DATABASE_URL)"
        )


def open_cache(settings: Settings) -> BalanceCache:
    """Process memory; with POINTS_REDIS_URL, Redis with this process's copy in front."""
    near = MemoryBalanceCache(max_entries=settings.cache.max_entries)
    if settings.redis_url is None:
        return near
    far = RedisBalanceCache.from_url(settings.redis_url.get_secret_value())
    # A copy read from Redis is held as long as any provider's balance could still be served
    # (a TTL, at most a day, plus stale-if-error): the fetcher judges each by its `stored_at`.
    return NearCache(near, far, keep_for=86_400 + settings.cache.stale_if_error)


def build_gateway(
    plan: GatewayPlan,
    store: AccountStore,
    cache: BalanceCache,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Gateway:
    """Build the upstreams, adapters and aggregator (the transport is the test seam)."""
    settings = plan.settings

    def upstream(provider: str, base_url: str, timeout: float) -> Upstream:
        # A backstop for plugins whose settings do not use BaseUrl.
        if base_url.startswith("http://") and not settings.sandbox:
            raise ConfigurationError(
                f"{base_url}: provider URLs must use https "
                "(plain http is allowed only with POINTS_SANDBOX=true)"
            )
        config = UpstreamConfig(
            provider=provider,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=settings.outbound.connect_timeout,
            max_bytes=settings.outbound.max_response_bytes,
        )
        return build_upstream(config, settings=settings.outbound, transport=transport)

    registry = Registry.build(plan.providers, upstream)
    fetcher = BalanceFetcher(
        registry, cache, resilience=settings.resilience, cache_settings=settings.cache
    )
    aggregator = Aggregator(registry, store, fetcher)
    jwks_url = settings.auth.jwks_url
    jwks = upstream("jwks", jwks_url, JWKS_TIMEOUT) if jwks_url else None
    return Gateway(settings, registry, store, aggregator, build_security(settings, jwks), jwks)


def build_security(settings: Settings, jwks: Upstream | None) -> Security:
    """The authenticator, the rate limits and the client-address rule, from the settings."""
    limits = settings.limits
    redis = settings.redis_url.get_secret_value() if settings.redis_url else None
    authenticator = Authenticator(settings.auth, jwks=jwks)
    return Security(
        authenticator,
        RateLimiter(limits.rate, redis_url=redis) if limits.rate is not None else None,
        ClientAddresses(limits.trusted_proxies),
        (
            FailedAuthLimit(limits.failed_auth_rate, redis_url=redis)
            if limits.failed_auth_rate is not None and authenticator.enabled
            else None
        ),
    )

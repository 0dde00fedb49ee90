"""The provider interface: what every points program adapter implements and how it is plugged in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

import httpx
from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class ProviderBalance:
    """One program's balance as an adapter reports it."""

    points: Decimal
    unit: str
    as_of: datetime


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-request facts an adapter may pass upstream (never secrets)."""

    request_id: str


class PointsProvider(Protocol):
    """An adapter for one points program.

    `fetch_balance` returns the balance of one linked account or raises an
    `app.errors.ProviderError` subclass; it never raises anything else for upstream trouble.
    """

    @property
    def name(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    async def fetch_balance(self, account: BaseModel, call: CallContext) -> ProviderBalance: ...

    async def aclose(self) -> None: ...


ClientFactory = Callable[[str, float], httpx.AsyncClient]
"""Builds the outbound client of one provider from (base_url, timeout)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderDeps:
    """What the gateway hands an adapter when it builds it."""

    client_factory: ClientFactory
    max_response_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderPlugin:
    """How a program plugs in: its names, its settings and account schemas, and its factory.

    Third-party packages expose one of these under the entry-point group
    `points_gateway.providers`.
    """

    name: str
    display_name: str
    unit: str
    settings_model: type[BaseModel]
    account_model: type[BaseModel]
    build: Callable[[BaseModel, ProviderDeps], PointsProvider]
    identify: Callable[[BaseModel], str] | None = None
    """The account's identifier at the provider (shown masked; never a secret)."""

    def masked_id(self, account: BaseModel) -> str:
        """The account's identifier, masked for display."""
        return mask(self.identify(account)) if self.identify else ""


def mask(identifier: str) -> str:
    """Enough of an identifier to recognise it, not to use it: `al****im`."""
    if len(identifier) <= 4:
        return "*" * len(identifier)
    keep = 2 if len(identifier) < 12 else 4
    # A fixed run of stars: the length of an identifier is itself a hint.
    return identifier[:keep] + "****" + identifier[-keep:]


M = TypeVar("M", bound=BaseModel)


def expect(model: type[M], value: BaseModel) -> M:
    """Narrow a type-erased settings or account object to the adapter's own model."""
    if not isinstance(value, model):
        raise TypeError(f"expected {model.__name__}, got {type(value).__name__}")
    return value


class ConfigurationError(Exception):
    """The settings cannot start the gateway; the message says what to set."""

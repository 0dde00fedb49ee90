"""The provider interface: what every provider adapter implements and how it is plugged in."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Protocol, TypeVar

from pydantic import BaseModel, StringConstraints

from app.outbound.upstream import Upstream


@dataclass(frozen=True, slots=True)
class ProviderBalance:
    """One provider's balance as an adapter reports it."""

    points: Decimal
    unit: str
    as_of: datetime
    details: Mapping[str, Decimal] | None = None
    """Named amounts beside the balance (expiring, pending, ...), when the provider reports any."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-request facts an adapter may pass upstream (never secrets)."""

    request_id: str


class PointsProvider(Protocol):
    """An adapter for one points provider.

    `fetch_balance` returns the balance of one linked account or raises an
    `app.errors.ProviderError` subclass; it never raises anything else for upstream trouble.
    """

    @property
    def timeout(self) -> float: ...

    async def fetch_balance(self, account: BaseModel, call: CallContext) -> ProviderBalance: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderDeps:
    """What the gateway hands an adapter when it builds it."""

    upstream: Callable[[str, float], Upstream]
    """This provider's upstream from (base_url, timeout): the only way to send a request."""


class Ownership(StrEnum):
    """How a caller proves that an account is theirs (DESIGN.md, "Who may link an account")."""

    SECRET = "secret"  # noqa: S105  (a kind of proof, not a password)
    """The account carries the user's own credential for the provider (a password)."""
    USER_TOKEN = "user_token"  # noqa: S105
    """The account carries the user's own session token, whose `sub` names the account."""
    TRUSTED_LINK = "trusted_link"
    """Ids only: the gateway cannot check; only a trusted service may link it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """What one account offers as proof of ownership; built by the plugin's `prove`."""

    kind: Ownership
    token: str | None = field(default=None, repr=False)
    """USER_TOKEN: the user's session token (a JWT)."""
    subject: str | None = None
    """USER_TOKEN: the account id that the token's `sub` must name."""
    same_subject: Callable[[str, str], bool] = operator.eq
    """USER_TOKEN: how the provider compares its account ids."""
    field: str = "token"
    """USER_TOKEN: the account field holding the token (named in a 422)."""
    hint: str = ""
    """TRUSTED_LINK: what an end user could send instead, for the 403's detail."""

    @classmethod
    def secret(cls) -> Proof:
        """The account carries the user's own credential."""
        return cls(kind=Ownership.SECRET)

    @classmethod
    def user_token(
        cls,
        token: str,
        *,
        subject: str,
        same_subject: Callable[[str, str], bool] = operator.eq,
        field: str = "token",
    ) -> Proof:
        """The account carries the user's session token for `subject`."""
        return cls(
            kind=Ownership.USER_TOKEN,
            token=token,
            subject=subject,
            same_subject=same_subject,
            field=field,
        )

    @classmethod
    def trusted_link(cls, hint: str = "") -> Proof:
        """Ids only; `hint` says what an end user could send to prove it instead."""
        return cls(kind=Ownership.TRUSTED_LINK, hint=hint)


def _ids_only(_: BaseModel) -> Proof:
    return Proof.trusted_link()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderPlugin:
    """How a provider plugs in: its names, its settings and account schemas, and its factory.

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
    prove: Callable[[BaseModel], Proof] = _ids_only
    """What an account offers as proof that it is the caller's (default: nothing, ids only)."""
    cache_ttl: float | None = None
    """Seconds its balances stay fresh, unless POINTS_CACHE__PROVIDER_TTL says otherwise."""

    def masked_id(self, account: BaseModel) -> str:
        """The account's identifier, masked for display."""
        return mask(self.identify(account)) if self.identify else ""


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]
"""An account identifier: 1-128 characters, no control characters (no CR, LF or NUL)."""


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

"""Who is calling: an end user acting on their own data, or a service with scopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Scope = Literal["points:read", "accounts:read", "accounts:write", "accounts:link_trusted"]
ALL_SCOPES: frozenset[str] = frozenset(get_args(Scope))
LINK_TRUSTED: Scope = "accounts:link_trusted"
"""Link or query accounts that carry no proof of ownership (ids only): the caller vouches."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: `id` is the user id for users, the key or client for services."""

    kind: Literal["user", "service", "anonymous"]
    id: str
    scopes: frozenset[str] = frozenset()

    @property
    def rate_key(self) -> str:
        """What rate limits count against."""
        return f"{self.kind}:{self.id}"


ANONYMOUS_SERVICE = Principal("anonymous", "auth-disabled", ALL_SCOPES)

"""The linked-account store: the interface every backend implements, and its records."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from app.accounts.change_feed import AccountChange
from app.errors import GatewayError
from app.providers.base import Ownership

LinkedAccount = BaseModel | GatewayError
"""A linked account's credentials, or the reason they cannot be used (e.g. unreadable)."""


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """The non-secret facts of one linked account."""

    provider: str
    masked_id: str
    linked_at: datetime
    updated_at: datetime
    last_fetch_at: datetime | None


class AccountStore(Protocol):
    """Which provider accounts each user has linked, and their credentials."""

    async def linked(self, user_id: str) -> Mapping[str, LinkedAccount]:
        """Every linked account of the user, credentials validated against their schema."""
        ...

    async def accounts(self, user_id: str) -> list[AccountInfo]:
        """The user's linked accounts, secrets left out, in provider order."""
        ...

    async def upsert(
        self,
        user_id: str,
        provider: str,
        account: BaseModel,
        *,
        masked_id: str,
        ownership: Ownership,
    ) -> tuple[AccountInfo, bool]:
        """Link or replace one account atomically; True when it was newly linked.

        `ownership` is what proved the account the caller's (checked by the caller beforehand).
        """
        ...

    async def delete(self, user_id: str, provider: str) -> bool:
        """Unlink one account; False when there was none."""
        ...

    @property
    def account_cache_active(self) -> bool | None:
        """Whether lookups are answered from the process's account cache now; None when the
        store keeps none."""
        ...

    def watch(self, on_change: Callable[[AccountChange], None]) -> None:
        """Call `on_change` for each account changed by any process, for as long as the store
        is open (a no-op where no other process can change them)."""
        ...

    def note_fetched(self, user_id: str, providers: Sequence[str]) -> None:
        """Record, in the background and throttled, that these accounts answered just now."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections and finish background writes."""
        ...


def reveal(account: BaseModel) -> bytes:
    """The account as JSON with its secrets in clear: only ever fed to the sealer."""
    fields = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in account
    }
    return to_json_bytes(fields)


def to_json_bytes(value: object) -> bytes:
    """Compact JSON of plain Python values."""
    return json.dumps(to_jsonable_python(value), separators=(",", ":")).encode()

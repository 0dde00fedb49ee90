"""An account store in process memory: tests, and a gateway whose accounts come from a file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from app.accounts.change_feed import AccountChange
from app.accounts.ownership import token_problem
from app.accounts.store import AccountInfo, LinkedAccount
from app.errors import ConfigurationError
from app.providers.base import Ownership, ProviderPlugin
from app.users import is_user_id


class MemoryAccountStore:
    """Accounts in a dict; nothing is sealed because nothing leaves the process.

    Every account here was checked when it was linked, or given by the operator (a file, a
    test), so there is no unrecorded ownership to check on reading.
    """

    def __init__(self, accounts: Mapping[str, Mapping[str, BaseModel]] | None = None) -> None:
        now = datetime.now(UTC)
        self._accounts: dict[str, dict[str, tuple[BaseModel, AccountInfo]]] = {
            user: {p: (a, AccountInfo(p, "", now, now, None)) for p, a in links.items()}
            for user, links in (accounts or {}).items()
        }

    async def linked(self, user_id: str) -> Mapping[str, LinkedAccount]:
        return {p: account for p, (account, _) in self._accounts.get(user_id, {}).items()}

    async def accounts(self, user_id: str) -> list[AccountInfo]:
        return [info for _, (_, info) in sorted(self._accounts.get(user_id, {}).items())]

    async def upsert(
        self,
        user_id: str,
        provider: str,
        account: BaseModel,
        *,
        masked_id: str,
        ownership: Ownership,
    ) -> tuple[AccountInfo, bool]:
        now = datetime.now(UTC)
        links = self._accounts.setdefault(user_id, {})
        previous = links.get(provider)
        linked_at = previous[1].linked_at if previous else now
        info = AccountInfo(provider, masked_id, linked_at, now, None)
        links[provider] = (account, info)
        return info, previous is None

    async def delete(self, user_id: str, provider: str) -> bool:
        return self._accounts.get(user_id, {}).pop(provider, None) is not None

    @property
    def account_cache_active(self) -> bool | None:
        """No cache: the dict is the store."""
        return None

    def watch(self, on_change: Callable[[AccountChange], None]) -> None:
        """Nothing to follow: no other process shares these accounts."""

    def note_fetched(self, user_id: str, providers: Sequence[str]) -> None:
        links = self._accounts.get(user_id, {})
        now = datetime.now(UTC)
        for provider in providers:
            if provider in links:
                account, info = links[provider]
                links[provider] = (account, dataclasses.replace(info, last_fetch_at=now))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def load_accounts(
    raw: object, plugins: Mapping[str, ProviderPlugin], *, source: str
) -> dict[str, dict[str, BaseModel]]:
    """Validate `{user_id: {provider: account fields}}`; errors name fields, never values."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{source}: expected an object of users")
    problems: list[str] = []
    accounts: dict[str, dict[str, BaseModel]] = {}
    for user, links in raw.items():
        if not is_user_id(user):
            problems.append(f"{source}: a user id is not of the form the API accepts")
            continue
        if not isinstance(links, dict):
            problems.append(f"{source}: {user}: expected an object of providers")
            continue
        for provider, fields in links.items():
            plugin = plugins.get(provider)
            if plugin is None:
                problems.append(f"{source}: {user}.{provider}: provider is not enabled")
                continue
            try:
                account = plugin.account_model.model_validate(fields)
            except ValidationError as exc:
                for err in exc.errors(include_input=False, include_url=False):
                    where = ".".join(str(p) for p in err["loc"])
                    problems.append(f"{source}: {user}.{provider}.{where}: {err['msg']}")
                continue
            # The operator vouches for ids-only accounts; a user's own token must still fit.
            proof = plugin.prove(account)
            problem = token_problem(proof) if proof.kind is Ownership.USER_TOKEN else None
            if problem is not None:
                problems.append(f"{source}: {user}.{provider}.{proof.field}: {problem}")
                continue
            accounts.setdefault(user, {})[provider] = account
    if problems:
        raise ConfigurationError("invalid linked accounts:\n  " + "\n  ".join(problems))
    return accounts


def load_accounts_file(
    path: Path, plugins: Mapping[str, ProviderPlugin]
) -> dict[str, dict[str, BaseModel]]:
    """Read and validate a JSON accounts file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read accounts file {path}: {exc}") from exc
    return load_accounts(raw, plugins, source=str(path))

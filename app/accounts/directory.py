"""Which program accounts a user has linked: the interface, and an in-memory implementation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ValidationError

from app.providers.base import ConfigurationError, ProviderPlugin


class AccountDirectory(Protocol):
    """Looks up a user's linked accounts, each already validated against its provider's schema."""

    async def linked(self, user_id: str) -> Mapping[str, BaseModel]: ...


class InMemoryDirectory:
    """A fixed directory, seeded at start (demo, tests, small static deployments)."""

    def __init__(self, accounts: Mapping[str, Mapping[str, BaseModel]] | None = None) -> None:
        self._accounts = {user: dict(links) for user, links in (accounts or {}).items()}

    async def linked(self, user_id: str) -> Mapping[str, BaseModel]:
        return self._accounts.get(user_id, {})

    @classmethod
    def from_raw(
        cls, raw: object, plugins: Mapping[str, ProviderPlugin], *, source: str
    ) -> InMemoryDirectory:
        """Validate `{user_id: {provider: account fields}}` against the configured providers."""
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{source}: expected an object of users")
        problems: list[str] = []
        accounts: dict[str, dict[str, BaseModel]] = {}
        for user, links in raw.items():
            if not isinstance(links, dict):
                problems.append(f"{source}: {user}: expected an object of providers")
                continue
            for provider, fields in links.items():
                plugin = plugins.get(provider)
                if plugin is None:
                    problems.append(f"{source}: {user}.{provider}: provider is not enabled")
                    continue
                try:
                    accounts.setdefault(user, {})[provider] = plugin.account_model.model_validate(
                        fields
                    )
                except ValidationError as exc:
                    for err in exc.errors(include_input=False, include_url=False):
                        where = ".".join(str(p) for p in err["loc"])
                        problems.append(f"{source}: {user}.{provider}.{where}: {err['msg']}")
        if problems:
            raise ConfigurationError("invalid linked accounts:\n  " + "\n  ".join(problems))
        return cls(accounts)

    @classmethod
    def from_file(cls, path: Path, plugins: Mapping[str, ProviderPlugin]) -> InMemoryDirectory:
        """Load a JSON seed file; its errors name the file and the field, never a value."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read accounts file {path}: {exc}") from exc
        return cls.from_raw(raw, plugins, source=str(path))

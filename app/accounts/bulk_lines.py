"""One account of a bulk import: validated like a link, sealed, ready to write (or why not).

A line of the NDJSON format is `{"user_id": ..., "provider": ..., <the provider's account
fields>}`. Messages name the field and the rule, never a value: a line may carry a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from app.accounts.ownership import token_problem
from app.accounts.sealing import Keyring
from app.accounts.store import reveal
from app.providers.base import Ownership, ProviderPlugin
from app.users import is_user_id

Row = dict[str, Any]
"""The values of one `linked_accounts` row, as the link path writes them."""


class LineError(Exception):
    """A line that cannot be linked; the message names fields, never their values."""


def parse_line(raw: bytes) -> tuple[str, str, dict[str, Any]]:
    """The user id, the provider and the account fields of one NDJSON line."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LineError("not valid JSON") from None
    if not isinstance(value, dict):
        raise LineError("expected a JSON object")
    user_id = value.pop("user_id", None)
    provider = value.pop("provider", None)
    if user_id is None:
        raise LineError("user_id: missing")
    if not is_user_id(user_id):
        raise LineError("user_id: a user id is not of the form the API accepts")
    if provider is None:
        raise LineError("provider: missing")
    if not isinstance(provider, str):
        raise LineError("provider: expected a string")
    return user_id, provider, value


class AccountRows:
    """Turns accounts into sealed rows: the per-provider models and ownership rules of a link."""

    def __init__(self, plugins: Mapping[str, ProviderPlugin], keyring: Keyring) -> None:
        self._plugins = dict(plugins)
        self._keyring = keyring

    def validate(self, provider: str, fields: object) -> BaseModel:
        """The provider's account model for `fields`, or LineError naming each bad field."""
        plugin = self._plugins.get(provider)
        if plugin is None:
            # Never echoed: a value in the wrong column may be a secret.
            raise LineError(
                f"provider: not one of the enabled providers ({', '.join(self._plugins)})"
            )
        try:
            account = plugin.account_model.model_validate(fields)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False, include_context=False)
            raise LineError(
                "; ".join(
                    ".".join((provider, *(str(p) for p in err["loc"]))) + f": {err['msg']}"
                    for err in errors
                )
            ) from None
        # The operator vouches for ids-only accounts; a user's own token must still fit.
        proof = plugin.prove(account)
        problem = token_problem(proof) if proof.kind is Ownership.USER_TOKEN else None
        if problem is not None:
            raise LineError(f"{provider}.{proof.field}: {problem}")
        return account

    def row(self, user_id: str, provider: str, account: BaseModel, *, now: datetime) -> Row:
        """The sealed row a link of `account` writes (an upsert keeps its `linked_at`)."""
        plugin = self._plugins[provider]
        return {
            "user_id": user_id,
            "provider": provider,
            "masked_id": plugin.masked_id(account),
            "sealed": self._keyring.seal(reveal(account), user_id=user_id, provider=provider),
            "key_id": self._keyring.current_id,
            "linked_at": now,
            "updated_at": now,
            "ownership": plugin.prove(account).kind.value,
        }

    def from_line(self, raw: bytes, *, now: datetime) -> Row:
        """One NDJSON line, validated and sealed; LineError says what is wrong with it."""
        user_id, provider, fields = parse_line(raw)
        return self.row(user_id, provider, self.validate(provider, fields), now=now)

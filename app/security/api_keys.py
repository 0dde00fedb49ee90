"""Service API keys: stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from app.security.principal import Principal


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its name, the hash of its value, its scopes."""

    name: str
    sha256: bytes
    scopes: frozenset[str]


def hash_key(value: str) -> str:
    """The hex SHA-256 of a key, the only form settings hold."""
    return hashlib.sha256(value.encode()).hexdigest()


class ApiKeyVerifier:
    """Finds the principal of an `X-API-Key` value, or None."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = list(keys)

    def verify(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKey | None = None
        # Every key is compared, so timing does not say which one matched.
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256) and found is None:
                found = key
        return Principal("service", found.name, found.scopes) if found else None

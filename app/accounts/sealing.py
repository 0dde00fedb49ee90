"""Secret sealing: AES-256-GCM under a keyring, each value bound to its user and provider."""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.errors import ConfigurationError, CredentialsUnreadable

FORMAT = "v1"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(user_id: str, provider: str, key_id: str) -> bytes:
    # Binding the row's identity in means a sealed value copied to another row will not open.
    return "\x00".join((f"points-gateway/{FORMAT}", user_id, provider, key_id)).encode()


@dataclass(frozen=True)
class Keyring:
    """Key id -> 256-bit key; the first is current and seals, every one can open."""

    keys: dict[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError("the keyring is empty")

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.keys)})"

    @property
    def current_id(self) -> str:
        """The id of the key that seals new values."""
        return next(iter(self.keys))

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read `id:base64key,id:base64key` (first is current); errors never quote a key."""
        keys: dict[str, bytes] = {}
        for position, item in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
            key_id, sep, encoded = item.partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"POINTS_SECRET_KEYS entry {position}: expected id:base64key "
                    "(id of 1-32 letters, digits, _ or -)"
                )
            try:
                key = _unb64(encoded)
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ConfigurationError(
                    f"POINTS_SECRET_KEYS key {key_id!r}: must be 32 bytes, base64-encoded"
                )
            if key_id in keys:
                raise ConfigurationError(f"POINTS_SECRET_KEYS: key id {key_id!r} appears twice")
            keys[key_id] = key
        return cls(keys)

    @staticmethod
    def generate_entry(key_id: str | None = None) -> str:
        """A new `id:base64key` entry for POINTS_SECRET_KEYS."""
        key_id = key_id or f"k{secrets.token_hex(4)}"
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigurationError("a key id is 1-32 letters, digits, _ or -")
        return f"{key_id}:{_b64(AESGCM.generate_key(bit_length=256))}"

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A keyring that lives only in this process (the demo's)."""
        return cls.parse(cls.generate_entry("ephemeral"))

    def seal(self, plaintext: bytes, *, user_id: str, provider: str) -> str:
        """Encrypt under the current key: `v1.<key id>.<nonce>.<ciphertext+tag>`."""
        key_id = self.current_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[key_id]).encrypt(
            nonce, plaintext, _aad(user_id, provider, key_id)
        )
        return ".".join((FORMAT, key_id, _b64(nonce), _b64(sealed)))

    def unseal(self, token: str, *, user_id: str, provider: str) -> bytes:
        """Decrypt and authenticate; any tampering, move or missing key is CredentialsUnreadable."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != FORMAT:
            raise CredentialsUnreadable("The stored value is not in a known format.")
        _, key_id, nonce, sealed = parts
        key = self.keys.get(key_id)
        if key is None:
            raise CredentialsUnreadable(f"The key {key_id!r} that sealed this value is not loaded.")
        try:
            return AESGCM(key).decrypt(
                _unb64(nonce), _unb64(sealed), _aad(user_id, provider, key_id)
            )
        except (InvalidTag, ValueError) as exc:
            raise CredentialsUnreadable(
                "The stored value failed authentication (altered, or not this account's)."
            ) from exc

    @staticmethod
    def key_id_of(token: str) -> str | None:
        """The key id a sealed value names, without opening it."""
        parts = token.split(".")
        return parts[1] if len(parts) == 4 and parts[0] == FORMAT else None

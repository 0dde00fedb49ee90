"""Sealing credentials: AES-GCM under a keyring, each value bound to its (user, provider) row."""

from __future__ import annotations

import base64
import re

import pytest

from app.accounts.sealing import Keyring
from app.errors import ConfigurationError, CredentialsUnreadable
from tests.accounts.conftest import KEY_A, KEY_B

PLAIN = b'{"benepia_user":"alice.kim","benepia_password":"sEcReT-pw"}'
TOKEN_FORMAT = re.compile(r"v1\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


def key_bytes(entry: str) -> bytes:
    """The raw key of an `id:base64key` entry."""
    encoded = entry.partition(":")[2]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_alice(keyring: Keyring) -> str:
    return keyring.seal(PLAIN, user_id="alice", provider="benepia")


def open_alice(keyring: Keyring, token: str) -> bytes:
    return keyring.unseal(token, user_id="alice", provider="benepia")


def key_material(*entries: str) -> list[str]:
    """Every spelling of the entries' keys that must never appear in a message."""
    spelled: list[str] = []
    for entry in entries:
        encoded = entry.partition(":")[2]
        raw = key_bytes(entry)
        spelled += [encoded, encoded[:16], raw.hex(), base64.b64encode(raw).decode()]
    return spelled


def assert_no_key_material(text: str, *entries: str) -> None:
    for secret in key_material(*entries):
        assert secret not in text


# --- Round trip and format ---------------------------------------------------------------------


def test_seal_then_unseal_round_trips() -> None:
    keyring = Keyring.parse(KEY_A)
    assert open_alice(keyring, seal_alice(keyring)) == PLAIN


def test_empty_plaintext_round_trips() -> None:
    keyring = Keyring.parse(KEY_A)
    token = keyring.seal(b"", user_id="alice", provider="benepia")
    assert open_alice(keyring, token) == b""


def test_token_is_v1_key_id_nonce_ciphertext() -> None:
    keyring = Keyring.parse(KEY_A)
    token = seal_alice(keyring)
    match = TOKEN_FORMAT.fullmatch(token)
    assert match is not None, token
    key_id, nonce, sealed = match.groups()
    assert key_id == "key-a"
    assert len(unb64(nonce)) == 12
    # The ciphertext is the plaintext's length plus the 16-byte GCM tag.
    assert len(unb64(sealed)) == len(PLAIN) + 16
    assert Keyring.key_id_of(token) == "key-a"
    assert PLAIN.decode() not in token
    assert b"sEcReT-pw" not in unb64(sealed)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = Keyring.parse(KEY_A)
    both = Keyring.parse(f"{KEY_B},{KEY_A}")
    assert both.current_id == "key-b"
    assert Keyring.key_id_of(seal_alice(both)) == "key-b"
    assert open_alice(both, seal_alice(old)) == PLAIN


def test_each_seal_uses_a_fresh_nonce() -> None:
    keyring = Keyring.parse(KEY_A)
    tokens = [seal_alice(keyring) for _ in range(20)]
    assert len(set(tokens)) == len(tokens)
    nonces = {t.split(".")[2] for t in tokens}
    assert len(nonces) == len(tokens)
    assert all(open_alice(keyring, t) == PLAIN for t in tokens)


def test_key_id_of_rejects_foreign_formats() -> None:
    assert Keyring.key_id_of("v2.key-a.nonce.ct") is None
    assert Keyring.key_id_of("v1.key-a.nonce") is None
    assert Keyring.key_id_of("") is None


# --- Binding to the row ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "provider"),
    [("bob", "benepia"), ("alice", "gafapay"), ("Alice", "benepia"), ("alice ", "benepia")],
)
def test_a_value_does_not_open_for_another_row(user_id: str, provider: str) -> None:
    keyring = Keyring.parse(KEY_A)
    token = seal_alice(keyring)
    with pytest.raises(CredentialsUnreadable) as caught:
        keyring.unseal(token, user_id=user_id, provider=provider)
    assert "sEcReT-pw" not in str(caught.value)


def test_user_and_provider_cannot_trade_characters() -> None:
    keyring = Keyring.parse(KEY_A)
    token = keyring.seal(PLAIN, user_id="ab", provider="c")
    with pytest.raises(CredentialsUnreadable):
        keyring.unseal(token, user_id="a", provider="bc")


# --- Tampering ---------------------------------------------------------------------------------


def with_part(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def flip_byte(encoded: str, position: int) -> str:
    data = bytearray(unb64(encoded))
    data[position % len(data)] ^= 0x01
    return b64(bytes(data))


def tampered_tokens(token: str) -> dict[str, str]:
    _, key_id, nonce, sealed = token.split(".")
    n = len(unb64(sealed))
    variants = {
        "format v2": with_part(token, 0, "v2"),
        "format V1": with_part(token, 0, "V1"),
        "format empty": with_part(token, 0, ""),
        "key id case": with_part(token, 1, key_id.upper()),
        "key id empty": with_part(token, 1, ""),
        "key id one char": with_part(token, 1, key_id[:-1] + "b"),
        "nonce empty": with_part(token, 2, ""),
        "nonce short": with_part(token, 2, b64(unb64(nonce)[:8])),
        "nonce one char": with_part(token, 2, nonce[:-3] + "!" + nonce[-2:]),
        "nonce not ascii": with_part(token, 2, nonce[:4] + "é" + nonce[5:]),
        "nonce impossible length": with_part(token, 2, nonce + "A"),
        "ciphertext empty": with_part(token, 3, ""),
        "ciphertext truncated": with_part(token, 3, b64(unb64(sealed)[:-1])),
        "ciphertext tag only": with_part(token, 3, b64(unb64(sealed)[-16:])),
        "ciphertext extended": with_part(token, 3, b64(unb64(sealed) + b"\x00")),
        "too few parts": token.rsplit(".", 1)[0],
        "too many parts": token + ".x",
        "empty": "",
        "garbage": "not a sealed value",
    }
    for position in (0, n // 2, n - 17, n - 1):
        variants[f"ciphertext byte {position}"] = with_part(token, 3, flip_byte(sealed, position))
    for position in (0, 6, 11):
        variants[f"nonce byte {position}"] = with_part(token, 2, flip_byte(nonce, position))
    return variants


@pytest.mark.parametrize("variant", sorted(tampered_tokens(seal_alice(Keyring.parse(KEY_A)))))
def test_any_tampering_is_credentials_unreadable(variant: str) -> None:
    keyring = Keyring.parse(f"{KEY_A},{KEY_B}")
    token = tampered_tokens(seal_alice(keyring))[variant]
    with pytest.raises(CredentialsUnreadable) as caught:
        open_alice(keyring, token)
    assert type(caught.value) is CredentialsUnreadable
    assert_no_key_material(str(caught.value), KEY_A, KEY_B)


def test_a_value_relabelled_with_another_loaded_key_id_does_not_open() -> None:
    keyring = Keyring.parse(f"{KEY_A},{KEY_B}")
    token = seal_alice(keyring)
    with pytest.raises(CredentialsUnreadable):
        open_alice(keyring, with_part(token, 1, "key-b"))


def test_every_single_character_change_is_caught_or_harmless() -> None:
    """Changing any one character either fails cleanly or decodes to the very same bytes."""
    keyring = Keyring.parse(KEY_A)
    token = seal_alice(keyring)
    for index, char in enumerate(token):
        for replacement in {"A", "_", ".", "Z"} - {char}:
            changed = token[:index] + replacement + token[index + 1 :]
            try:
                plain = open_alice(keyring, changed)
            except CredentialsUnreadable:
                continue
            # Only base64 padding bits of a final character can change without changing bytes.
            assert plain == PLAIN, (index, replacement)


def test_an_unknown_key_id_is_named_without_key_material() -> None:
    token = seal_alice(Keyring.parse(KEY_A))
    with pytest.raises(CredentialsUnreadable) as caught:
        open_alice(Keyring.parse(KEY_B), token)
    message = str(caught.value)
    assert "key-a" in message
    assert_no_key_material(message, KEY_A, KEY_B)
    assert_no_key_material(repr(caught.value), KEY_A, KEY_B)


# --- Parsing the keyring -----------------------------------------------------------------------


def test_parse_keeps_order_and_the_first_key_is_current() -> None:
    keyring = Keyring.parse(f" {KEY_B} , {KEY_A} ,")
    assert list(keyring.keys) == ["key-b", "key-a"]
    assert keyring.current_id == "key-b"
    assert keyring.keys["key-a"] == key_bytes(KEY_A)
    assert len(keyring.keys["key-b"]) == 32


GOOD_KEY = KEY_A.partition(":")[2]
SHORT_KEY = b64(bytes(range(16)))
LONG_KEY = b64(bytes(range(33)))


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("", "empty"),
        (" , ,", "empty"),
        (GOOD_KEY, "entry 1"),
        (f"{KEY_A},{GOOD_KEY}", "entry 2"),
        (f"bad id:{GOOD_KEY}", "entry 1"),
        (f"bad.id:{GOOD_KEY}", "entry 1"),
        (f"{'k' * 33}:{GOOD_KEY}", "entry 1"),
        (f":{GOOD_KEY}", "entry 1"),
        (f"short:{SHORT_KEY}", "'short'"),
        (f"long:{LONG_KEY}", "'long'"),
        ("nokey:", "'nokey'"),
        (f"badb64:{GOOD_KEY[:-3]}!!", "'badb64'"),
        (f"badb64:{GOOD_KEY[:-1]}", "'badb64'"),
        (f"nonascii:{GOOD_KEY[:-1]}é", "'nonascii'"),
        (f"{KEY_A},key-a:{GOOD_KEY}", "twice"),
        (f"{KEY_A},{KEY_A}", "twice"),
    ],
)
def test_parse_errors_are_configuration_errors_without_key_material(
    text: str, mentions: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Keyring.parse(text)
    message = str(caught.value)
    assert mentions in message
    assert_no_key_material(message, KEY_A)
    for fragment in (SHORT_KEY, LONG_KEY, GOOD_KEY[:-3], GOOD_KEY[:-1]):
        assert fragment not in message
    # Nothing chained onto the error may carry the key either.
    cause = caught.value.__cause__ or caught.value.__context__
    if cause is not None:
        assert_no_key_material(str(cause), KEY_A)
        assert SHORT_KEY not in str(cause)


def test_repr_and_str_show_key_ids_only() -> None:
    keyring = Keyring.parse(f"{KEY_A},{KEY_B}")
    for shown in (repr(keyring), str(keyring), f"{keyring!r}", f"{[keyring]}"):
        assert "key-a" in shown
        assert "key-b" in shown
        assert_no_key_material(shown, KEY_A, KEY_B)


def test_generate_entry_makes_parseable_distinct_256_bit_keys() -> None:
    first = Keyring.generate_entry("fresh")
    second = Keyring.generate_entry("fresh")
    assert first != second
    assert first.startswith("fresh:")
    keyring = Keyring.parse(first)
    assert keyring.current_id == "fresh"
    assert len(keyring.keys["fresh"]) == 32
    token = keyring.seal(PLAIN, user_id="u", provider="p")
    assert keyring.unseal(token, user_id="u", provider="p") == PLAIN


def test_generate_entry_without_an_id_picks_a_valid_one() -> None:
    entries = [Keyring.generate_entry() for _ in range(5)]
    ids = [Keyring.parse(e).current_id for e in entries]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", i) for i in ids)
    assert len(Keyring.parse(",".join(entries)).keys) == 5


@pytest.mark.parametrize("key_id", ["bad id", "a:b", "x,y", "k" * 33, "é"])
def test_generate_entry_refuses_an_id_parse_would_refuse(key_id: str) -> None:
    with pytest.raises(ConfigurationError):
        Keyring.generate_entry(key_id)


def test_ephemeral_keyrings_differ() -> None:
    a, b = Keyring.ephemeral(), Keyring.ephemeral()
    token = a.seal(PLAIN, user_id="u", provider="p")
    with pytest.raises(CredentialsUnreadable):
        b.unseal(token, user_id="u", provider="p")

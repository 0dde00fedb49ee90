"""Verified bearer tokens are remembered: never for another token, past `exp`, or a rotated key."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from functools import partial
from typing import Any, Self

import httpx
import jwt
import jwt.api_jwt
import pytest

from app.errors import Unauthorized
from app.security import authenticator as authenticator_module
from app.security.jwt_verifier import JwksCache, JwtConfig, JwtVerifier
from app.security.principal import Principal
from app.security.token_cache import TokenCache
from tests.security.conftest import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    JWKS_URL,
    RSA_KEY,
    RSA_KEY_2,
    ServeGateway,
    assert_unauthorized,
    bearer,
    claims_for,
    hs256,
    jwk_of,
    secure_settings,
    user_token,
)

LEEWAY = 30.0
CONFIG = JwtConfig(
    hs256_secret=HS_SECRET.encode(),
    algorithms=frozenset({"HS256"}),
    issuer=ISSUER,
    audience=AUDIENCE,
    leeway=LEEWAY,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token `jwt.decode` is asked to check, in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A wall clock that PyJWT's exp/nbf checks read too, so both agree on what time it is."""
    clock = Clock(time.time())

    class Datetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(clock.now, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", Datetime)
    return clock


def verifier(clock: Callable[[], float] = time.time, max_size: int = 10_000) -> JwtVerifier:
    return JwtVerifier(CONFIG, verified=TokenCache(max_size, clock=clock))


async def test_a_repeated_token_is_answered_without_decoding(decodes: list[str]) -> None:
    jwt_verifier = verifier()
    token = user_token("alice")
    first = await jwt_verifier.verify(token)
    second = await jwt_verifier.verify(token)
    assert first == second == Principal("user", "alice")
    assert decodes == [token]


def _resigned(token: str) -> str:
    """The same header and claims with the signature's first character changed."""
    signing_input, _, signature = token.rpartition(".")
    flipped = "B" if signature[0] == "A" else "A"
    return f"{signing_input}.{flipped}{signature[1:]}"


def _payload_swapped(token: str) -> str:
    """Bob's claims under alice's signature."""
    header, _, signature = token.split(".")
    bob = user_token("bob").split(".")[1]
    return f"{header}.{bob}.{signature}"


@pytest.mark.parametrize("forge", [_resigned, _payload_swapped])
async def test_a_token_that_differs_from_a_remembered_one_is_still_checked(
    decodes: list[str], forge: Callable[[str], str]
) -> None:
    jwt_verifier = verifier()
    token = user_token("alice")
    await jwt_verifier.verify(token)
    forged = forge(token)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="failed verification"):
            await jwt_verifier.verify(forged)
    assert decodes == [token, forged, forged], "a failure is never remembered either"
    assert await jwt_verifier.verify(token) == Principal("user", "alice")


async def test_a_wrong_secret_token_never_gets_a_principal(decodes: list[str]) -> None:
    jwt_verifier = verifier()
    wrong = hs256(claims_for("alice"), "another-secret-of-forty-bytes-00000000")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await jwt_verifier.verify(wrong)
    assert decodes == [wrong] * 3


async def test_a_token_not_yet_valid_is_accepted_once_its_nbf_arrives(
    clock: Clock, decodes: list[str]
) -> None:
    jwt_verifier = verifier(clock)
    token = user_token("alice", nbf_in=120)
    with pytest.raises(Unauthorized, match="not valid yet"):
        await jwt_verifier.verify(token)
    clock.now += 120
    assert await jwt_verifier.verify(token) == Principal("user", "alice")
    assert decodes == [token, token]


async def test_past_exp_a_remembered_token_is_verified_again_and_refused(
    clock: Clock, decodes: list[str]
) -> None:
    jwt_verifier = verifier(clock)
    token = user_token("alice", exp_in=60)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    decodes.clear()
    await jwt_verifier.verify(token)

    clock.now = exp - 1
    await jwt_verifier.verify(token)
    assert len(decodes) == 1, "remembered until exp"

    clock.now = exp + LEEWAY / 2
    assert await jwt_verifier.verify(token) == Principal("user", "alice"), "the leeway still holds"
    assert len(decodes) == 2, "past exp the token is fully verified again"

    clock.now = exp + LEEWAY + 1
    with pytest.raises(Unauthorized, match="expired"):
        await jwt_verifier.verify(token)


async def test_the_least_recently_used_token_is_evicted_at_the_max_size(
    decodes: list[str],
) -> None:
    jwt_verifier = verifier(max_size=2)
    first, second, third = (user_token(sub) for sub in ("u1", "u2", "u3"))
    for token in (first, second, first, third):
        await jwt_verifier.verify(token)
    assert decodes == [first, second, third]

    decodes.clear()
    assert await jwt_verifier.verify(second) == Principal("user", "u2")
    assert decodes == [second], "the oldest was dropped; the recently used ones were kept"


async def test_the_cache_shows_no_token() -> None:
    jwt_verifier = verifier()
    token = user_token("alice")
    await jwt_verifier.verify(token)
    for text in (repr(jwt_verifier), repr(vars(jwt_verifier))):
        assert token not in text
        assert token.split(".")[2] not in text


# --- JWKS -------------------------------------------------------------------------------------

JWKS_AUTH: dict[str, object] = {
    "mode": "required",
    "jwks_url": JWKS_URL,
    "issuer": ISSUER,
    "audience": AUDIENCE,
}
ALICE_ACCOUNTS = "/users/alice/accounts"


def rs_token(key: object, kid: str) -> str:
    return jwt.encode(claims_for("alice"), key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


async def test_a_withdrawn_jwks_key_ends_its_remembered_tokens_once_the_jwks_is_refetched(
    serve_gateway: ServeGateway, monkeypatch: pytest.MonkeyPatch, decodes: list[str]
) -> None:
    monotonic = Clock(10_000.0)
    monkeypatch.setattr(authenticator_module, "JwksCache", partial(JwksCache, clock=monotonic))
    published = {"keys": [jwk_of(RSA_KEY, "k1")]}
    token = rs_token(RSA_KEY, "k1")
    async with serve_gateway(secure_settings(auth=JWKS_AUTH)) as gw:
        jwks = gw.upstream.get(JWKS_URL).mock(
            side_effect=lambda _: httpx.Response(200, json=published)
        )
        for _ in range(5):
            response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
            assert response.status_code == 200, response.text
            monotonic.now += 10
        assert len(decodes) == 1, "remembered"
        assert jwks.call_count == 1, "a hit on a fresh JWKS does not refetch it"

        # Refetched with k1 still in it: a new key object, so verified once more, then remembered.
        monotonic.now += 300
        for _ in range(2):
            response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
            assert response.status_code == 200, response.text
        assert (jwks.call_count, len(decodes)) == (2, 2)

        # The IdP withdraws k1; once the JWKS is refetched, its tokens are refused.
        published = {"keys": [jwk_of(RSA_KEY_2, "k2")]}
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
        assert response.status_code == 200, "still within the refresh interval"
        monotonic.now += 300
        for _ in range(2):
            refused = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
            assert_unauthorized(refused, never=(token,))
        assert jwks.call_count == 3

"""Bearer JWT verification with PyJWT: an algorithm allow-list tied to the key that checks it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt
from jwt import PyJWK, PyJWKSet

from app.errors import ProviderError, Unauthorized
from app.outbound.upstream import Upstream
from app.security.principal import ALL_SCOPES, Principal
from app.security.token_cache import TokenCache, Verified

log = logging.getLogger("points_gateway.auth")
ASYMMETRIC = frozenset({"RS256", "ES256"})
JWKS_TTL = 300.0
JWKS_MIN_REFRESH = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtConfig:
    """What a token must satisfy."""

    hs256_secret: bytes | None = None
    public_key_pem: str | None = None
    jwks_url: str | None = None
    algorithms: frozenset[str]
    issuer: str | None = None
    audience: str | None = None
    leeway: float
    service_claim: str = "gateway_service"


class JwksCache:
    """A JWKS document fetched on demand, kept for 5 minutes, refetched for an unknown `kid`."""

    def __init__(
        self, url: str, upstream: Upstream, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = url
        self._upstream = upstream
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -JWKS_TTL
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> PyJWK | None:
        """The key for `kid` (or the only key when the token names none)."""
        now = self._clock()
        stale = now - self._fetched_at >= JWKS_TTL
        unknown = kid not in self._keys and now - self._fetched_at >= JWKS_MIN_REFRESH
        if stale or unknown:
            async with self._lock:
                if self._clock() - self._fetched_at >= JWKS_MIN_REFRESH:
                    await self._refresh()
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self._fetched_at = self._clock()
        try:
            reply = await self._upstream.send(self._upstream.request("GET", self._url))
            if reply.status != 200:
                raise ValueError(f"the JWKS URL answered HTTP {reply.status}")
            keyset = PyJWKSet.from_dict(json.loads(reply.body))
        except (ProviderError, ValueError, jwt.PyJWTError) as exc:
            # Keep the keys we have: a JWKS outage must not log everybody out at once.
            log.warning(
                "JWKS refresh failed (%s); keeping %d cached keys",
                type(exc).__name__,
                len(self._keys),
            )
            return
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}


class JwtVerifier:
    """Turns a bearer token into a Principal, or raises 401 unauthorized."""

    def __init__(
        self,
        config: JwtConfig,
        jwks: JwksCache | None = None,
        *,
        verified: TokenCache | None = None,
    ) -> None:
        self._config = config
        self._jwks = jwks
        self._verified = TokenCache() if verified is None else verified

    async def verify(self, token: str) -> Principal:
        """Check signature, algorithm, exp/nbf, iss and aud; never trust the header's key choice.

        A token verified before is answered from memory until its `exp`, while the JWKS key
        that checked it (if one did) is still the current one for its `kid`.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            if remembered.jwk is None or await self._current_jwk(remembered.kid) is remembered.jwk:
                return remembered.principal
            self._verified.drop(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The bearer token is not a JWT.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._config.algorithms:
            raise Unauthorized("The token's algorithm is not accepted.")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        key = await self._key_for(alg, kid)
        try:
            claims: Mapping[str, object] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._config.audience is not None,
                    "verify_iss": self._config.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The token is not valid yet.") from None
        except jwt.PyJWTError:
            raise Unauthorized("The token failed verification.") from None
        principal = self._principal(claims)
        exp = claims["exp"]
        # decode accepted int(exp) as the expiry (a number, or a string of digits; it refuses
        # anything else), so the cache uses the same int() and an entry never outlives it.
        assert isinstance(exp, int | float | str)
        jwk = key if isinstance(key, PyJWK) else None
        self._verified.put(token, Verified(principal, int(exp), jwk, kid))
        return principal

    async def _current_jwk(self, kid: str | None) -> PyJWK | None:
        return None if self._jwks is None else await self._jwks.key(kid)

    async def _key_for(self, alg: str, kid: str | None) -> str | bytes | PyJWK:
        if alg == "HS256":
            if self._config.hs256_secret is None:
                raise Unauthorized("The token's algorithm is not accepted.")
            return self._config.hs256_secret
        if self._config.public_key_pem is not None:
            return self._config.public_key_pem
        if self._jwks is not None:
            found = await self._jwks.key(kid)
            if found is not None and found.algorithm_name == alg:
                return found
        raise Unauthorized("No key is known for this token.")

    def _principal(self, claims: Mapping[str, object]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The token has no subject.")
        if claims.get(self._config.service_claim) is True:
            raw = claims.get("scope", "")
            granted = set(raw.split()) if isinstance(raw, str) else set()
            return Principal("service", subject, frozenset(granted & ALL_SCOPES))
        return Principal("user", subject)

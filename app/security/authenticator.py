"""From a request's credentials to a Principal: bearer JWT or X-API-Key."""

from __future__ import annotations

import logging

from app.errors import ConfigurationError, Unauthorized
from app.outbound.upstream import Upstream
from app.security.api_keys import ApiKey, ApiKeyVerifier
from app.security.jwt_verifier import JwksCache, JwtConfig, JwtVerifier
from app.security.principal import ANONYMOUS_SERVICE, Principal
from app.settings import AuthSettings

log = logging.getLogger("points_gateway.auth")


class Authenticator:
    """Checks the caller's credentials; with auth disabled everyone is an all-scopes service."""

    def __init__(self, settings: AuthSettings, *, jwks: Upstream | None = None) -> None:
        self.enabled = settings.mode == "required"
        self._keys = ApiKeyVerifier(
            [
                ApiKey(k.name, bytes.fromhex(k.sha256), frozenset(k.scopes))
                for k in settings.api_keys
            ]
        )
        self._jwt: JwtVerifier | None = None
        algorithms = settings.algorithms()
        if algorithms:
            keys = JwksCache(settings.jwks_url, jwks) if settings.jwks_url and jwks else None
            config = JwtConfig(
                hs256_secret=(
                    settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
                ),
                public_key_pem=settings.jwt_public_key,
                jwks_url=settings.jwks_url,
                algorithms=algorithms,
                issuer=settings.issuer,
                audience=settings.audience,
                leeway=settings.leeway,
                service_claim=settings.service_claim,
            )
            self._jwt = JwtVerifier(config, keys)

    @staticmethod
    def check(settings: AuthSettings) -> None:
        """Refuse to start with auth on and no way to authenticate anyone."""
        if settings.mode == "disabled":
            return
        if not settings.algorithms() and not settings.api_keys:
            raise ConfigurationError(
                "POINTS_AUTH__MODE is required (the default) but no credentials are configured: "
                "set POINTS_AUTH__JWT_SECRET, POINTS_AUTH__JWT_PUBLIC_KEY, POINTS_AUTH__JWKS_URL "
                "or POINTS_AUTH__API_KEYS (or POINTS_AUTH__MODE=disabled for a trusted network)"
            )

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The principal behind these headers, or 401 unauthorized.

        Generated clients (hey-api's among them) fill every scheme an operation lists from one
        callback, so one credential may come in both headers: it is then checked once, as the
        bearer token when it has a JWT's shape, else as the API key. Two different credentials
        are refused rather than one of them picked.
        """
        if not self.enabled:
            return ANONYMOUS_SERVICE
        token = _bearer_token(authorization)
        if api_key is not None:
            if token is not None and token != api_key:
                raise Unauthorized(
                    "`Authorization: Bearer` and `X-API-Key` carry different credentials; "
                    "send one of them."
                )
            if token is None or self._jwt is None or token.count(".") != 2:
                return self._verify_key(api_key)
        if token is None or self._jwt is None:
            raise Unauthorized("Send `Authorization: Bearer <token>` or `X-API-Key`.")
        return await self._jwt.verify(token)

    def _verify_key(self, api_key: str) -> Principal:
        principal = self._keys.verify(api_key)
        if principal is None:
            raise Unauthorized("The API key is not valid.")
        return principal


def _bearer_token(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None

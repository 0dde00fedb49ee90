"""iamport access tokens: getToken's rules, over the SDK's session-token cache."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import SecretStr

from app.providers import (
    Upstream,
    UpstreamAuthFailed,
    UpstreamInvalidResponse,
    backoff_error,
    is_int,
    require_json,
    status_error,
)
from app.providers.iamport_envelope import parse_envelope
from app.providers.sessions import (
    MAX_TOKEN_LIFETIME,
    TOKEN_PATTERN,
    IssuedToken,
    SessionTokens,
)

TOKEN_PATH = "/users/getToken"  # noqa: S105  (a path, not a password)


class IamportTokenManager:
    """Hands out a valid iamport token, asking getToken only when needed and only once at a time."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        imp_key: str,
        imp_secret: SecretStr,
        refresh_margin: float,
        refresh_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._token_url = upstream.url(TOKEN_PATH)
        self._imp_key = imp_key
        self._imp_secret = imp_secret
        self._provider = upstream.provider
        # iamport hands out the same token (extended) when asked before it expires, so the current
        # one stays good while getToken runs: requests keep it rather than wait for the refresh.
        self._tokens = SessionTokens(
            upstream.provider,
            self._get_token,
            refresh_margin=refresh_margin,
            clock=clock,
            refresh_ahead=True,
            login_timeout=refresh_timeout,
        )

    @property
    def refresh_count(self) -> int:
        """How many times getToken was asked."""
        return self._tokens.refresh_count

    async def token(self) -> str:
        """A valid token: the current one (refreshed in the background inside the margin), or a
        freshly issued one when none is left."""
        return await self._tokens.token()

    async def aclose(self) -> None:
        """Cancel a getToken call still running."""
        await self._tokens.aclose()

    def invalidate(self, value: str) -> None:
        """Forget `value` after the upstream refused it (a no-op if it was already replaced)."""
        self._tokens.invalidate(value)

    async def _get_token(self) -> IssuedToken:
        request = self._upstream.request(
            "POST",
            self._token_url,
            json={"imp_key": self._imp_key, "imp_secret": self._imp_secret.get_secret_value()},
        )
        reply = await self._upstream.send(request)
        name = self._provider
        if reply.status == 401:
            # A refused key or secret is configuration, not a passing fault: never retried.
            raise UpstreamAuthFailed(
                "iamport refused the gateway's API key (check imp_key and imp_secret)",
                provider=name,
                upstream_status=401,
            )
        if (error := backoff_error(reply)) is not None:
            raise error
        require_json(reply)
        envelope = parse_envelope(reply.body)
        if reply.status != 200:
            raise status_error(reply, detail=envelope.message if envelope else None)
        if envelope is None:
            raise UpstreamInvalidResponse(
                "iamport getToken answered without its envelope", provider=name, upstream_status=200
            )
        if envelope.code != 0:
            raise UpstreamAuthFailed(
                envelope.message or "iamport refused to issue a token",
                provider=name,
                upstream_status=200,
                upstream_code=str(envelope.code),
            )
        return self._parse_token(envelope.response)

    def _parse_token(self, response: dict[str, object] | None) -> IssuedToken:
        response = response or {}
        value, now, expires = (response.get(k) for k in ("access_token", "now", "expired_at"))
        valid_token = isinstance(value, str) and TOKEN_PATTERN.fullmatch(value) is not None
        if not (valid_token and is_int(now) and is_int(expires)):
            raise UpstreamInvalidResponse(
                "iamport getToken answer lacks access_token, now or expired_at",
                provider=self._provider,
                upstream_status=200,
            )
        assert isinstance(value, str)
        assert isinstance(now, int)
        assert isinstance(expires, int)
        lifetime = expires - now
        if not 0 < lifetime <= MAX_TOKEN_LIFETIME:
            raise UpstreamInvalidResponse(
                f"iamport issued a token with an implausible lifetime ({lifetime} s)",
                provider=self._provider,
                upstream_status=200,
            )
        return IssuedToken(value, lifetime, status=200)

"""The security objects of one gateway instance."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from app.security.authenticator import Authenticator
from app.security.principal import Principal
from app.security.rate_limit import RateLimiter


@dataclass(frozen=True, slots=True)
class Security:
    """Authentication and rate limiting, built by the lifespan."""

    authenticator: Authenticator
    limiter: RateLimiter | None

    async def limit(self, principal: Principal | None, request: Request) -> None:
        """Count the request against its principal (or its client address when anonymous)."""
        if self.limiter is None:
            return
        if principal is None or principal.kind == "anonymous":
            client = request.client.host if request.client else "unknown"
            key = f"address:{client}"
        else:
            key = principal.rate_key
        await self.limiter.check(key)

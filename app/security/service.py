"""The security objects of one gateway instance."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

from starlette.requests import Request

from app.errors import Unauthorized
from app.observability.logging import HotLogger
from app.security.authenticator import Authenticator
from app.security.client_address import ClientAddresses
from app.security.failed_auth import FailedAuthLimit
from app.security.principal import Principal
from app.security.rate_limit import RateLimiter, RateLimitExceeded

auth_log = HotLogger("points_gateway.auth")


def _credential(authorization: str | None, api_key: str | None) -> str:
    if authorization is not None and api_key is not None:
        return "bearer+api_key"
    if authorization is not None:
        return "bearer"
    return "api_key" if api_key is not None else "none"


@dataclass(frozen=True, slots=True)
class Security:
    """Authentication, rate limits and client addresses, built by the lifespan."""

    authenticator: Authenticator
    limiter: RateLimiter | None
    addresses: ClientAddresses
    failed_auth: FailedAuthLimit | None = None

    async def authenticate(
        self, request: Request, authorization: str | None, api_key: str | None
    ) -> Principal:
        """The caller's principal, or 401; 429 instead while its address is over its failures."""
        self.refuse_if_over(request)
        try:
            return await self.authenticator.authenticate(authorization, api_key)
        except Unauthorized as exc:
            await self.failed(request, exc, credential=_credential(authorization, api_key))

    def refuse_if_over(self, request: Request) -> None:
        """429 while the caller's address is over its failed-authentication limit."""
        if self.failed_auth is not None:
            self.failed_auth.refuse_if_over(self.addresses.of(request.scope))

    async def failed(self, request: Request, error: Unauthorized, *, credential: str) -> NoReturn:
        """Log and count a failed authentication, then raise it (429 if it crossed the limit)."""
        address = self.addresses.of(request.scope)
        over: RateLimitExceeded | None = None
        if self.failed_auth is not None:
            try:
                await self.failed_auth.count(address)
            except RateLimitExceeded as exc:
                over = exc
        fields: dict[str, object] = {
            "client": address,
            "credential": credential,
            "reason": error.detail,
        }
        if over is not None:
            fields["refused_for_s"] = over.reset_after
        auth_log.log(logging.WARNING, "authentication_failed", **fields)
        raise over or error

    async def limit(self, principal: Principal | None, request: Request) -> None:
        """Count the request against its principal (or its client address when anonymous)."""
        if self.limiter is None:
            return
        if principal is None or principal.kind == "anonymous":
            key = f"address:{self.addresses.of(request.scope)}"
        else:
            key = principal.rate_key
        await self.limiter.check(key)

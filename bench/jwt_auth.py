"""The bench's JWT setup, shared by `bench.run` and `bench.ab`: one random HS256 secret per run
and a service token signed with it.

A gateway given `env()` verifies bearer tokens (a secret alone means HS256 only, see
`AuthSettings.algorithms`); a client sending `headers()` is a service (`gateway_service: true`)
holding `points:read`, so it may read every bench user's balances. Neither the secret nor the
token is ever logged or written to a report (`repr` hides both).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import jwt

SUBJECT = "bench-svc"
SCOPE = "points:read"
SERVICE_CLAIM = "gateway_service"  # AuthSettings.service_claim's default
LIFETIME_S = 2 * 3600


@dataclass(frozen=True)
class JwtAuth:
    secret: str = field(repr=False)
    token: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """The gateway's settings: auth on, HS256 with this secret."""
        return {"POINTS_AUTH__MODE": "required", "POINTS_AUTH__JWT_SECRET": self.secret}

    def headers(self) -> dict[str, str]:
        """What every request of the load, warm-up and prefill sends."""
        return {"Authorization": f"Bearer {self.token}"}


def new_jwt_auth() -> JwtAuth:
    """A fresh 64-character secret and a service token valid for two hours."""
    secret = secrets.token_urlsafe(48)
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": SUBJECT,
        SERVICE_CLAIM: True,
        "scope": SCOPE,
        "iat": now,
        "exp": now + LIFETIME_S,
    }
    return JwtAuth(secret, jwt.encode(claims, secret, algorithm="HS256"))


def redacted(argv: list[str]) -> list[str]:
    """A command line fit for an error message: header values (the bearer token) hidden."""
    shown, hide = [], False
    for arg in argv:
        shown.append(f"{arg.split(':', 1)[0]}: <redacted>" if hide else arg)
        hide = arg == "-H"
    return shown

"""State shared by the loyalty-platform emulators: members, accepted credentials, faults, calls."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response

from app.sandbox.faults import ErrorBody, SandboxState, apply_fault


@dataclass(slots=True)
class Member:
    """One customer of the emulated platform."""

    key: str
    points: Decimal
    email: str = "jane@doe.com"
    pending: Decimal = Decimal(0)


class LoyaltySandbox(SandboxState):
    """Members keyed by the platform's customer key, the credentials it accepts, and its knobs."""

    def __init__(self, *, endpoint: str, credentials: set[str], lowercase_keys: bool = False):
        # Faults keyed by the customer key as stored (emails lowercased) or "*".
        super().__init__((endpoint,))
        self.endpoint = endpoint
        self.credentials = credentials
        self.members: dict[str, Member] = {}
        self._lowercase = lowercase_keys

    @property
    def balance_calls(self) -> int:
        """How many balance requests arrived."""
        return self._calls[self.endpoint]

    def add(
        self,
        key: str,
        points: Decimal | int | str,
        *,
        email: str = "jane@doe.com",
        pending: Decimal | int | str = 0,
    ) -> Member:
        """Create or replace the member `key` with `points` (never a float: exact amounts)."""
        if isinstance(points, float) or isinstance(pending, float):
            raise TypeError("points must be Decimal, int or str")
        member = Member(self._key(key), Decimal(points), email, Decimal(pending))
        self.members[member.key] = member
        return member

    def find(self, key: str | None) -> Member | None:
        """The member `key`, if there is one."""
        return self.members.get(self._key(key)) if key else None

    def accepts(self, credential: str | None) -> bool:
        """Whether `credential` is one of the accepted sandbox credentials."""
        given = (credential or "").encode()
        return bool(given) and any(hmac.compare_digest(given, c.encode()) for c in self.credentials)

    async def answer(
        self, request: Request, key: str | None, status: int, body: bytes, error_body: ErrorBody
    ) -> Response:
        """The answer, bent by the fault installed for `key` (or "*") when there is one."""
        fault = self._faults.take(self._key(key) if key else None)
        return await apply_fault(request, fault, status, body, error_body=error_body)

    def _key(self, key: str | None) -> str:
        text = key or ""
        return text.lower() if self._lowercase else text


def bearer(request: Request, scheme: str) -> str | None:
    """The credential of an `Authorization: <scheme> <credential>` header, else None."""
    given, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if given.lower() == scheme.lower() else None


def request_id() -> str:
    """A fresh request id, as the platforms put in their error bodies."""
    return str(uuid.uuid4())

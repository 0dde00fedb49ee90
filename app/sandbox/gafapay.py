"""Emulator of the GafaPay reward-point balance endpoint."""

from __future__ import annotations

import hmac
import string
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import (
    CallCounter,
    FaultBook,
    Json,
    admin_routes,
    apply_fault,
    dump_json,
    status_phrase,
)

USER_POINTS_PATH = "/gafapay/v3/reward_promotion/user_points"
USER_POINTS = f"GET {USER_POINTS_PATH}"
UNAUTHORIZED_BODY = b'{"status":"error","code":401,"message":"UNAUTHORIZED"}'
MAX_ID_LENGTH = 32
MAX_RECORDS = 1000
_HEX = frozenset(string.hexdigits)


def normalize_id(value: str) -> str | None:
    """Return a hex id lowercased without leading zeros, or None if it is not 1-32 hex chars."""
    text = value.strip().lower()
    if not 1 <= len(text) <= MAX_ID_LENGTH or not _HEX.issuperset(text):
        return None
    return text.lstrip("0") or "0"


def _failure(*messages: str) -> bytes:
    return dump_json({"success": 0, "error": list(messages)})


def _error_body(status: int) -> bytes:
    return UNAUTHORIZED_BODY if status == 401 else _failure(status_phrase(status))


@dataclass(slots=True)
class GafapayAccount:
    """One user's balance in one currency."""

    user_id: str
    currency_id: str
    points: Decimal
    user_type: int
    record_id: str


@dataclass(frozen=True, slots=True)
class UserPointsQuery:
    """The parts of a user_points request the emulator looks at."""

    authorization: str | None
    company_id: str | None
    request_id: str | None
    user_id: str | None
    currency_id: str | None


class GafapaySandbox:
    """State of the GafaPay emulator: company, accepted JWTs and accounts."""

    def __init__(self, *, company_id: str, tokens: set[str]) -> None:
        self.company_id = company_id
        self.tokens = tokens
        # Keyed by normalize_id(user_id), normalize_id(currency_id).
        self.accounts: dict[tuple[str, str], GafapayAccount] = {}
        self.last_request_ids: list[str] = []
        self._faults = FaultBook()
        self._calls = CallCounter((USER_POINTS,))

    @property
    def faults(self) -> FaultBook:
        """Injected faults, keyed by normalized user_id or "*"."""
        return self._faults

    @property
    def calls(self) -> CallCounter:
        """Per-endpoint request counts."""
        return self._calls

    @property
    def points_calls(self) -> int:
        """Requests received by the user_points endpoint."""
        return self._calls[USER_POINTS]

    def add_account(
        self,
        user_id: str,
        currency_id: str,
        points: Decimal | int | str,
        user_type: int = 2,
    ) -> GafapayAccount:
        """Create or replace the balance of ``user_id`` in ``currency_id``."""
        user_key, currency_key = normalize_id(user_id), normalize_id(currency_id)
        if user_key is None or currency_key is None:
            raise ValueError("user_id and currency_id must be 1-32 hex characters")
        if isinstance(points, float) or isinstance(user_type, bool):
            raise TypeError("points must be Decimal, int or str; user_type an int")
        try:
            amount = Decimal(points)
        except InvalidOperation as exc:
            raise ValueError(f"points is not a decimal: {points!r}") from exc
        if not amount.is_finite():
            raise ValueError("points must be finite")
        account = GafapayAccount(
            user_id=user_id.strip().lower(),
            currency_id=currency_id.strip().lower(),
            points=amount,
            user_type=user_type,
            record_id=uuid.uuid4().hex,
        )
        self.accounts[(user_key, currency_key)] = account
        return account

    def find_account(self, user_id: str, currency_id: str) -> GafapayAccount | None:
        """Look an account up by ids, ignoring case and leading zeros."""
        user_key, currency_key = normalize_id(user_id), normalize_id(currency_id)
        if user_key is None or currency_key is None:
            return None
        return self.accounts.get((user_key, currency_key))

    def reset(self) -> None:
        """Clear faults, counters and recorded request ids."""
        self._faults.clear()
        self._calls.reset()
        self.last_request_ids.clear()

    def _token_ok(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token:
            return False
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens)

    def user_points(self, query: UserPointsQuery) -> tuple[int, bytes]:
        """Answer a user_points request."""
        if query.request_id:
            self.last_request_ids.append(query.request_id)
            del self.last_request_ids[:-MAX_RECORDS]
        if not self._token_ok(query.authorization):
            return 401, UNAUTHORIZED_BODY
        if (query.company_id or "").strip().lower() != self.company_id.strip().lower():
            return 200, _failure("Invalid company")
        if not query.request_id:
            return 200, _failure("requestid header is required")
        if not query.user_id or not query.currency_id:
            return 200, _failure("user_id and currency_id are required")
        account = self.find_account(query.user_id, query.currency_id)
        if account is None:
            return 200, _failure("User points not found")
        user_points: dict[str, Json] = {
            "id": account.record_id,
            "user_id": account.user_id,
            "user_type": account.user_type,
            "points": account.points,
            "currency_id": account.currency_id,
        }
        return 200, dump_json({"success": 1, "error": [], "data": {"user_points": user_points}})


def create_gafapay_app(sandbox: GafapaySandbox) -> Starlette:
    """Build the GafaPay emulator ASGI app over ``sandbox``."""

    async def user_points(request: Request) -> Response:
        sandbox.calls.hit(USER_POINTS)
        query = UserPointsQuery(
            authorization=request.headers.get("authorization"),
            company_id=request.headers.get("companyid"),
            request_id=request.headers.get("requestid"),
            user_id=request.query_params.get("user_id"),
            currency_id=request.query_params.get("currency_id"),
        )
        status, body = sandbox.user_points(query)
        fault_key = normalize_id(query.user_id or "")
        fault = sandbox.faults.take(fault_key)
        return await apply_fault(request, fault, status, body, error_body=_error_body)

    routes = [Route(USER_POINTS_PATH, user_points, methods=["GET"]), *admin_routes(sandbox)]
    return Starlette(routes=routes, max_body_size=64 * 1024)

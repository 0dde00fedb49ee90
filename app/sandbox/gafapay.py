"""Emulator of the GafaPay reward-point balance endpoint."""

from __future__ import annotations

import hmac
import json
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import (
    JSON_TYPE,
    Json,
    SandboxState,
    admin_routes,
    apply_fault,
    dump_json,
    status_phrase,
)

USER_POINTS_PATH = "/gafapay/v3/reward_promotion/user_points"
USER_POINTS = f"GET {USER_POINTS_PATH}"
CUSTOMER_TOKENS_PATH = "/__sandbox/customer_tokens"
CUSTOMER_TOKEN_LIFETIME = 3600
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


class GafapaySandbox(SandboxState):
    """State of the GafaPay emulator: company, accepted JWTs and accounts.

    Two kinds of token open the points endpoint: the merchant tokens in `tokens` (any user's
    points, as the gateway-wide token does) and customer session tokens the emulator signed
    itself (`customer_token`: HS256, `sub` the GafaPay user id, `roles: ["ROLE_CUSTOMER"]`),
    which read only their own user's points.
    """

    def __init__(self, *, company_id: str, tokens: set[str]) -> None:
        # Faults keyed by normalized user_id or "*".
        super().__init__((USER_POINTS,))
        self.company_id = company_id
        self.tokens = tokens
        self._signing_key = secrets.token_bytes(32)
        # Keyed by normalize_id(user_id), normalize_id(currency_id).
        self.accounts: dict[tuple[str, str], GafapayAccount] = {}
        self.last_request_ids: list[str] = []

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
        super().reset()
        self.last_request_ids.clear()

    def customer_token(self, user_id: str, *, lifetime: int = CUSTOMER_TOKEN_LIFETIME) -> str:
        """A customer's session token, as GafaPay issues it at login."""
        if normalize_id(user_id) is None:
            raise ValueError("user_id must be 1-32 hex characters")
        now = int(time.time())
        claims = {"sub": user_id, "roles": ["ROLE_CUSTOMER"], "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self._signing_key, algorithm="HS256")

    def _bearer_of(self, authorization: str | None) -> str | None:
        """Whose token this is: "*" for a merchant token, a user id for a customer's, else None."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token:
            return None
        if any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens):
            return "*"
        try:
            claims = jwt.decode(token, self._signing_key, algorithms=["HS256"])
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return normalize_id(subject) if isinstance(subject, str) else None

    def user_points(self, query: UserPointsQuery) -> tuple[int, bytes]:
        """Answer a user_points request."""
        if query.request_id:
            self.last_request_ids.append(query.request_id)
            del self.last_request_ids[:-MAX_RECORDS]
        bearer = self._bearer_of(query.authorization)
        if bearer is None:
            return 401, UNAUTHORIZED_BODY
        if (query.company_id or "").strip().lower() != self.company_id.strip().lower():
            return 200, _failure("Invalid company")
        if not query.request_id:
            return 200, _failure("requestid header is required")
        if not query.user_id or not query.currency_id:
            return 200, _failure("user_id and currency_id are required")
        if bearer != "*" and bearer != normalize_id(query.user_id):
            return 200, _failure("Access denied")
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

    async def customer_tokens(request: Request) -> Response:
        # Stands in for GafaPay's customer login, so a walk-through can link with a real token.
        try:
            user_id = json.loads(await request.body())["user_id"]
            token = sandbox.customer_token(str(user_id))
        except (ValueError, KeyError, TypeError):
            return Response(_failure("user_id: 1-32 hex characters"), 422, media_type=JSON_TYPE)
        return Response(dump_json({"token": token}), media_type=JSON_TYPE)

    routes = [
        Route(USER_POINTS_PATH, user_points, methods=["GET"]),
        Route(CUSTOMER_TOKENS_PATH, customer_tokens, methods=["POST"]),
        *admin_routes(sandbox),
    ]
    return Starlette(routes=routes, max_body_size=64 * 1024)

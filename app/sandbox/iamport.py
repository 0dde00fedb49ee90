"""Emulator of iamport (PortOne V1): the token endpoint and the Benepia point query."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import (
    Json,
    SandboxState,
    admin_routes,
    apply_fault,
    dump_json,
    status_phrase,
)

GET_TOKEN = "POST /users/getToken"
BENEPIA_POINT = "POST /benepia/point"
# Fault key that targets the token endpoint; "*" never does.
GET_TOKEN_FAULT_KEY = "getToken"
MISSING_FIELDS_MESSAGE = "benepia_user, benepia_password는 필수입니다"
LOGIN_FAILED_MESSAGE = "베네피아 로그인에 실패했습니다. 아이디와 비밀번호를 확인해주세요."
EXTEND_WINDOW = 60
EXTENSION = 300
MAX_BODY = 64 * 1024
MAX_RECORDS = 1000


@dataclass(slots=True)
class BenepiaAccount:
    """A Benepia login and its balance."""

    password: str = field(repr=False)
    points: int


@dataclass(frozen=True, slots=True)
class PointRequestRecord:
    """What a Benepia point call asked for (never the password)."""

    user: str
    channel_key: str | None
    pg: str | None


class TokenRequest(BaseModel):
    """Body of /users/getToken."""

    model_config = ConfigDict(extra="ignore")

    imp_key: str
    imp_secret: SecretStr


class BenepiaPointRequest(BaseModel):
    """Body of /benepia/point; the channel is optional (legacy default channel)."""

    model_config = ConfigDict(extra="ignore")

    benepia_user: str = Field(min_length=1)
    benepia_password: SecretStr = Field(min_length=1)
    channel_key: str | None = None
    pg: str | None = None


def _envelope(code: int, message: str | None, response: Json) -> bytes:
    return dump_json({"code": code, "message": message, "response": response})


UNAUTHORIZED_BODY = _envelope(-1, "Unauthorized", None)


def _error_body(status: int) -> bytes:
    if status == 401:
        return UNAUTHORIZED_BODY
    return _envelope(-1, status_phrase(status), None)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class IamportSandbox(SandboxState):
    """State of the iamport emulator: credentials, the current token, Benepia accounts."""

    def __init__(
        self,
        *,
        imp_key: str,
        imp_secret: str,
        token_ttl: int = 1800,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token_ttl <= EXTEND_WINDOW:
            raise ValueError(f"token_ttl must be more than {EXTEND_WINDOW} seconds")
        # Faults keyed by benepia_user, "*" or "getToken".
        super().__init__((GET_TOKEN, BENEPIA_POINT))
        self.imp_key = imp_key
        self._imp_secret = imp_secret
        self.token_ttl = token_ttl
        self.clock = clock
        self.accounts: dict[str, BenepiaAccount] = {}
        self.point_requests: list[PointRequestRecord] = []
        self._token: str | None = None
        self._expires_at = 0

    def __repr__(self) -> str:
        return f"IamportSandbox(imp_key={self.imp_key!r}, accounts={len(self.accounts)})"

    @property
    def get_token_calls(self) -> int:
        """Requests received by /users/getToken."""
        return self._calls[GET_TOKEN]

    @property
    def point_calls(self) -> int:
        """Requests received by /benepia/point."""
        return self._calls[BENEPIA_POINT]

    @property
    def access_token(self) -> str | None:
        """The token data calls accept right now, if any."""
        return self._token if self._token_live() else None

    def add_account(self, user: str, password: str, points: int) -> BenepiaAccount:
        """Create or replace a Benepia account."""
        account = BenepiaAccount(password=password, points=points)
        self.accounts[user] = account
        return account

    def expire_tokens(self) -> None:
        """Invalidate the current token at once."""
        self._token = None

    def reset(self) -> None:
        """Clear faults, counters and request records."""
        super().reset()
        self.point_requests.clear()

    def _token_live(self) -> bool:
        return self._token is not None and self.clock() < self._expires_at

    def get_token(self, raw: bytes) -> tuple[int, bytes]:
        """Answer a getToken request body."""
        try:
            req = TokenRequest.model_validate_json(raw)
        except ValidationError:
            return 401, UNAUTHORIZED_BODY
        if not (
            _same(req.imp_key, self.imp_key)
            and _same(req.imp_secret.get_secret_value(), self._imp_secret)
        ):
            return 401, UNAUTHORIZED_BODY
        now = int(self.clock())
        if self._token is None or now >= self._expires_at:
            self._token = secrets.token_hex(20)
            self._expires_at = now + self.token_ttl
        elif self._expires_at - now <= EXTEND_WINDOW:
            self._expires_at += EXTENSION
        response: Json = {"access_token": self._token, "now": now, "expired_at": self._expires_at}
        return 200, _envelope(0, None, response)

    def query_point(self, token: str | None, req: BenepiaPointRequest | None) -> tuple[int, bytes]:
        """Answer a Benepia point request, given its bearer token and parsed body."""
        if token is None or self._token is None or not self._token_live():
            return 401, UNAUTHORIZED_BODY
        if not _same(token, self._token):
            return 401, UNAUTHORIZED_BODY
        if req is None:
            return 400, _envelope(-1, MISSING_FIELDS_MESSAGE, None)
        self.point_requests.append(PointRequestRecord(req.benepia_user, req.channel_key, req.pg))
        del self.point_requests[:-MAX_RECORDS]
        account = self.accounts.get(req.benepia_user)
        password = req.benepia_password.get_secret_value()
        if account is None or not _same(password, account.password):
            return 200, _envelope(1, LOGIN_FAILED_MESSAGE, None)
        return 200, _envelope(0, "", {"point": account.points})


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _parse_point(raw: bytes) -> BenepiaPointRequest | None:
    try:
        return BenepiaPointRequest.model_validate_json(raw)
    except ValidationError:
        return None


def create_iamport_app(sandbox: IamportSandbox) -> Starlette:
    """Build the iamport emulator ASGI app over ``sandbox``."""

    async def get_token(request: Request) -> Response:
        sandbox.calls.hit(GET_TOKEN)
        status, body = sandbox.get_token(await request.body())
        fault = sandbox.faults.take(GET_TOKEN_FAULT_KEY, wildcard=False)
        return await apply_fault(request, fault, status, body, error_body=_error_body)

    async def benepia_point(request: Request) -> Response:
        sandbox.calls.hit(BENEPIA_POINT)
        req = _parse_point(await request.body())
        status, body = sandbox.query_point(_bearer(request), req)
        fault = sandbox.faults.take(None if req is None else req.benepia_user)
        return await apply_fault(request, fault, status, body, error_body=_error_body)

    async def expire_tokens(request: Request) -> Response:
        sandbox.expire_tokens()
        return Response(dump_json({"expired": True}), media_type="application/json")

    routes = [
        Route("/users/getToken", get_token, methods=["POST"]),
        Route("/benepia/point", benepia_point, methods=["POST"]),
        Route("/__sandbox/expire-tokens", expire_tokens, methods=["POST"]),
        *admin_routes(sandbox),
    ]
    return Starlette(routes=routes, max_body_size=MAX_BODY)

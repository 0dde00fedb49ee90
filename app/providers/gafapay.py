"""GafaPay reward points: `GET /gafapay/v3/reward_promotion/user_points`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from app.providers import (
    BaseUrl,
    CallContext,
    Proof,
    ProviderBalance,
    ProviderDeps,
    ProviderPlugin,
    ProviderRejected,
    Reply,
    Upstream,
    UpstreamAuthFailed,
    UpstreamInvalidResponse,
    backoff_error,
    expect,
    is_int,
    parse_json,
    points_value,
    require_json,
    status_error,
    upstream_text,
)

NAME = "gafapay"
POINTS_PATH = "/gafapay/v3/reward_promotion/user_points"


def _canonical_hex(value: str) -> str:
    return value.lower()


HexId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{1,32}$"),
    AfterValidator(_canonical_hex),
]
"""GafaPay ids: hex of 1 to 32 characters (leading zeros may be dropped, so not always 32)."""


def same_id(a: str, b: str) -> bool:
    """Compare two GafaPay hex ids the way GafaPay does: case- and leading-zero-insensitive."""
    return a.lower().lstrip("0") == b.lower().lstrip("0")


def _header_safe(value: SecretStr) -> SecretStr:
    # The token travels in a header: printable ASCII only, or no HTTP client could send it.
    if not re.fullmatch(r"[\x21-\x7e]{1,4096}", value.get_secret_value()):
        raise ValueError("must be 1-4096 printable ASCII characters without spaces")
    return value


HeaderToken = Annotated[
    SecretStr,
    AfterValidator(_header_safe),
    Field(json_schema_extra={"pattern": "^[!-~]{1,4096}$", "writeOnly": True}),
]


CustomerToken = Annotated[
    SecretStr,
    AfterValidator(_header_safe),
    Field(
        description="The customer's own GafaPay session token: a JWT whose `sub` is "
        "`gafapay_user_id`. It proves the account is the caller's; without it only a service "
        "holding the `accounts:link_trusted` scope may link or query the account.",
        json_schema_extra={
            "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*$",
            "maxLength": 4096,
            "writeOnly": True,
        },
    ),
]


class GafapaySettings(BaseModel):
    """Gateway-wide GafaPay settings (POINTS_PROVIDERS__GAFAPAY__*)."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseUrl = "https://api.gafapay.com:8443"
    company_id: HexId
    token: HeaderToken
    timeout: float = Field(default=3.0, gt=0, le=60)


class GafapayAccount(BaseModel):
    """A user's GafaPay identity: user and currency ids, and optionally its own session token.

    With `token` (the customer's GafaPay session JWT, `sub` = the GafaPay user id) the account
    proves itself; without it, only a trusted service may link it (app/accounts/ownership.py).
    """

    model_config = ConfigDict(extra="forbid")

    gafapay_user_id: HexId
    currency_id: HexId
    token: CustomerToken | None = None


class TokenSource(Protocol):
    """Where the GafaPay session JWT comes from (static now; a refreshing source can plug in)."""

    async def token_for(self, account: GafapayAccount) -> str: ...


class StaticTokenSource:
    """The account's own token if it has one, else the gateway-wide token from settings."""

    def __init__(self, default: SecretStr) -> None:
        self._default = default

    async def token_for(self, account: GafapayAccount) -> str:
        return (account.token or self._default).get_secret_value()


class GafapayProvider:
    """Adapter for GafaPay reward points."""

    def __init__(
        self, settings: GafapaySettings, *, upstream: Upstream, tokens: TokenSource | None = None
    ) -> None:
        self._settings = settings
        self._upstream = upstream
        self._points_url = upstream.url(POINTS_PATH)
        self._tokens = tokens or StaticTokenSource(settings.token)

    @property
    def timeout(self) -> float:
        return self._settings.timeout

    async def fetch_balance(self, account: BaseModel, call: CallContext) -> ProviderBalance:
        """Query the account's balance; `success` decides, never the HTTP status alone."""
        gafapay = expect(GafapayAccount, account)
        request = self._upstream.request(
            "GET",
            self._points_url,
            params={"user_id": gafapay.gafapay_user_id, "currency_id": gafapay.currency_id},
            headers={
                "authorization": f"Token {await self._tokens.token_for(gafapay)}",
                "companyid": self._settings.company_id,
                "requestid": _upstream_request_id(call.request_id),
            },
        )
        return self._balance(await self._upstream.send(request), gafapay)

    async def aclose(self) -> None:
        await self._upstream.aclose()

    def _balance(self, reply: Reply, account: GafapayAccount) -> ProviderBalance:
        if reply.status == 401:
            raise UpstreamAuthFailed(
                "GafaPay refused the session token (expired, revoked or malformed)",
                provider=NAME,
                upstream_status=401,
            )
        if (error := backoff_error(reply)) is not None:
            raise error
        require_json(reply)
        data = parse_json(reply.body)
        body = data if isinstance(data, dict) else None
        success = body.get("success") if body is not None else None
        if body is not None and is_int(success) and success == 0 and reply.status < 500:
            raise ProviderRejected(
                _messages(body.get("error")) or "GafaPay refused the request",
                provider=NAME,
                upstream_status=reply.status,
            )
        if reply.status != 200:
            raise status_error(reply, detail=_messages(body and body.get("error")))
        if body is None or not is_int(success) or success != 1:
            raise _invalid("GafaPay answered without success 0 or 1")
        return _parse_points(body.get("data"), account)


def _parse_points(data: object, account: GafapayAccount) -> ProviderBalance:
    record = data.get("user_points") if isinstance(data, dict) else None
    if not isinstance(record, dict):
        raise _invalid("GafaPay answered success 1 without data.user_points")
    points = points_value(record.get("points"))
    if points is None:
        raise _invalid("GafaPay's user_points.points is not a plausible number")
    for field, expected in (
        ("user_id", account.gafapay_user_id),
        ("currency_id", account.currency_id),
    ):
        got = record.get(field)
        # A record for someone else, or one that does not say whose it is, is never shown.
        if not (isinstance(got, str) and same_id(got, expected)):
            raise _invalid(f"GafaPay answered for a different {field}")
    return ProviderBalance(
        points=points, unit=f"{NAME}:{account.currency_id}", as_of=datetime.now(UTC)
    )


def _messages(errors: object) -> str | None:
    items = errors if isinstance(errors, list) else [errors]
    texts = [text for text in map(upstream_text, items[:20]) if text]
    return upstream_text("; ".join(texts), limit=1000)


def _invalid(detail: str) -> UpstreamInvalidResponse:
    return UpstreamInvalidResponse(detail, provider=NAME, upstream_status=200)


def _upstream_request_id(request_id: str) -> str:
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        return str(uuid.uuid4())


def _prove(account: BaseModel) -> Proof:
    gafapay = expect(GafapayAccount, account)
    if gafapay.token is None:
        return Proof.trusted_link(
            "send the user's own GafaPay session token in `token` (its `sub` is the "
            "GafaPay user id)"
        )
    return Proof.user_token(
        gafapay.token.get_secret_value(), subject=gafapay.gafapay_user_id, same_subject=same_id
    )


def _build(settings: BaseModel, deps: ProviderDeps) -> GafapayProvider:
    own = expect(GafapaySettings, settings)
    return GafapayProvider(own, upstream=deps.upstream(own.base_url, own.timeout))


plugin = ProviderPlugin(
    name=NAME,
    display_name="GafaPay reward points",
    unit=f"{NAME}:<currency_id>",
    settings_model=GafapaySettings,
    account_model=GafapayAccount,
    build=_build,
    identify=lambda account: expect(GafapayAccount, account).gafapay_user_id,
    prove=_prove,
)

"""Benepia points through iamport (PortOne V1) and KCP: `POST /benepia/point`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.providers import (
    BaseUrl,
    CallContext,
    Identifier,
    OutboundRequest,
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
    points_value,
    require_json,
    status_error,
)
from app.providers.iamport_envelope import parse_envelope
from app.providers.iamport_token import IamportTokenManager

NAME = "benepia"
UNIT = "benepia_point"


class BenepiaSettings(BaseModel):
    """Gateway-wide iamport credentials and the KCP channel (POINTS_PROVIDERS__BENEPIA__*)."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseUrl = "https://api.iamport.kr"
    imp_key: str = Field(min_length=1)
    imp_secret: SecretStr
    channel_key: str | None = None
    pg: str | None = Field(default=None, pattern=r"^kcp(\.[A-Za-z0-9_-]+)?$")
    timeout: float = Field(default=4.0, gt=0, le=60)
    token_refresh_margin: float = Field(default=30.0, ge=0, lt=60)

    @field_validator("channel_key", "pg", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("imp_secret")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class BenepiaAccount(BaseModel):
    """A user's Benepia login; the password is a secret end to end."""

    model_config = ConfigDict(extra="forbid")

    benepia_user: Identifier
    benepia_password: SecretStr = Field(
        min_length=1, max_length=256, json_schema_extra={"writeOnly": True}
    )


class BenepiaProvider:
    """Adapter for Benepia points; one token manager per process."""

    def __init__(
        self,
        settings: BenepiaSettings,
        *,
        upstream: Upstream,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._upstream = upstream
        self._point_url = upstream.url("/benepia/point")
        self.tokens = IamportTokenManager(
            upstream,
            imp_key=settings.imp_key,
            imp_secret=settings.imp_secret,
            refresh_margin=settings.token_refresh_margin,
            refresh_timeout=settings.timeout,
            clock=clock,
        )

    @property
    def timeout(self) -> float:
        return self._settings.timeout

    async def fetch_balance(self, account: BaseModel, call: CallContext) -> ProviderBalance:
        """Query the account's balance; refresh the token once on a 401, never loop."""
        benepia = expect(BenepiaAccount, account)
        token = await self.tokens.token()
        reply = await self._upstream.send(self._point_request(benepia, token))
        if reply.status == 401:
            self.tokens.invalidate(token)
            token = await self.tokens.token()
            reply = await self._upstream.send(self._point_request(benepia, token))
            if reply.status == 401:
                raise UpstreamAuthFailed(
                    "iamport refused a freshly issued token", provider=NAME, upstream_status=401
                )
        return self._balance(reply)

    async def aclose(self) -> None:
        await self.tokens.aclose()
        await self._upstream.aclose()

    def _point_request(self, account: BenepiaAccount, token: str) -> OutboundRequest:
        body: dict[str, str] = {
            "benepia_user": account.benepia_user,
            "benepia_password": account.benepia_password.get_secret_value(),
        }
        if self._settings.channel_key:
            body["channel_key"] = self._settings.channel_key
        elif self._settings.pg:
            body["pg"] = self._settings.pg
        return self._upstream.request(
            "POST", self._point_url, json=body, headers={"authorization": f"Bearer {token}"}
        )

    def _balance(self, reply: Reply) -> ProviderBalance:
        if (error := backoff_error(reply)) is not None:
            raise error
        require_json(reply)
        envelope = parse_envelope(reply.body)
        if reply.status == 200:
            if envelope is None:
                raise UpstreamInvalidResponse(
                    "iamport answered without its {code, message, response} envelope",
                    provider=NAME,
                    upstream_status=200,
                )
            if envelope.code == 0:
                return self._parse_point(envelope.response)
        if envelope is not None and envelope.code != 0 and reply.status < 500:
            # Not retried: repeated refused logins may lock the user's Benepia account.
            raise ProviderRejected(
                envelope.message or "Benepia refused the request",
                provider=NAME,
                upstream_status=reply.status,
                upstream_code=str(envelope.code),
            )
        if envelope is None:
            raise status_error(reply)
        raise status_error(reply, detail=envelope.message, upstream_code=str(envelope.code))

    def _parse_point(self, response: dict[str, object] | None) -> ProviderBalance:
        raw = (response or {}).get("point")
        point = points_value(raw) if is_int(raw) else None
        if point is None:
            raise UpstreamInvalidResponse(
                "iamport answered code 0 without a plausible integer response.point",
                provider=NAME,
                upstream_status=200,
            )
        return ProviderBalance(points=point, unit=UNIT, as_of=datetime.now(UTC))


def _build(settings: BaseModel, deps: ProviderDeps) -> BenepiaProvider:
    own = expect(BenepiaSettings, settings)
    return BenepiaProvider(own, upstream=deps.upstream(own.base_url, own.timeout))


plugin = ProviderPlugin(
    name=NAME,
    display_name="Benepia points (iamport/KCP)",
    unit=UNIT,
    settings_model=BenepiaSettings,
    account_model=BenepiaAccount,
    build=_build,
    identify=lambda account: expect(BenepiaAccount, account).benepia_user,
    prove=lambda _: Proof.secret(),  # the password: Benepia checks it at every query
)

"""ACME Rewards: a third provider as a plugin, written against `app.providers` alone."""

from datetime import UTC, datetime
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr

import app.providers as sdk

NAME, UNIT = "acme", "acme_point"


class AcmeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: sdk.BaseUrl = "https://api.acme.example"
    api_key: SecretStr
    timeout: float = Field(default=3.0, gt=0, le=60)


class AcmeAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: sdk.Identifier
    member_pin: SecretStr = Field(
        min_length=4, max_length=64, json_schema_extra={"writeOnly": True}
    )


class AcmeProvider:
    def __init__(self, settings: AcmeSettings, deps: sdk.ProviderDeps) -> None:
        self.timeout, self._key = settings.timeout, settings.api_key
        self._upstream = deps.upstream(settings.base_url, settings.timeout)

    async def fetch_balance(self, account: BaseModel, call: sdk.CallContext) -> sdk.ProviderBalance:
        member = sdk.expect(AcmeAccount, account)
        url = self._upstream.url(f"/v1/members/{quote(member.member_id, safe='')}/balance")
        headers = {
            "x-api-key": self._key.get_secret_value(),
            "x-member-pin": member.member_pin.get_secret_value(),
            "x-request-id": call.request_id,
        }
        reply = await self._upstream.send(self._upstream.request("GET", url, headers=headers))
        if (error := sdk.backoff_error(reply)) is not None:
            raise error
        sdk.require_json(reply)
        body = sdk.parse_json(reply.body)
        body = body if isinstance(body, dict) else {}
        if reply.status == 404 and body.get("status") == "MEMBER_NOT_FOUND":
            raise sdk.ProviderRejected(
                sdk.upstream_text(body.get("message")) or "ACME knows no such member",
                provider=NAME,
                upstream_status=404,
                upstream_code="MEMBER_NOT_FOUND",
            )
        if reply.status != 200:
            raise sdk.status_error(reply)
        data = body.get("data")
        data = data if isinstance(data, dict) else {}
        points = sdk.points_value(data.get("points"))
        if points is None or data.get("member_id") != member.member_id:
            raise sdk.UpstreamInvalidResponse(
                "ACME answered without this member's points", provider=NAME, upstream_status=200
            )
        return sdk.ProviderBalance(points, UNIT, datetime.now(UTC))

    async def aclose(self) -> None:
        await self._upstream.aclose()


plugin = sdk.ProviderPlugin(
    name=NAME,
    display_name="ACME Rewards",
    unit=UNIT,
    settings_model=AcmeSettings,
    account_model=AcmeAccount,
    build=lambda settings, deps: AcmeProvider(sdk.expect(AcmeSettings, settings), deps),
    identify=lambda account: sdk.expect(AcmeAccount, account).member_id,
    prove=lambda _: sdk.Proof.secret(),  # the member's PIN: ACME checks it at every query
)

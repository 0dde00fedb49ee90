"""The declarative provider: one generic adapter that serves any compiled definition.

Order of decisions on an answer (docs/definitions.md): the seam's own failures first (timeouts,
refused connections, bodies over the cap); under `auth: session` a 401 refreshes the token once
and retries, and only the retry's answer goes on; a 2xx that declares a non-JSON content type is
refused; then the `errors` rules in order; then a 2xx must meet every `success` condition and
every `checks` entry; anything else falls to the default mapping (429 or 503 with Retry-After:
rate limited; 401, 403: auth failed; the rest: upstream error).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

from pydantic import BaseModel, SecretStr

from app.definitions.compiled import Compiled, CompiledRequest, CompiledSession, JsonTemplate
from app.definitions.rules import Values, messages
from app.definitions.templates import Template
from app.providers import (
    CallContext,
    ProviderBalance,
    Reply,
    Upstream,
    UpstreamAuthFailed,
    UpstreamInvalidResponse,
    backoff_error,
    parse_json,
    require_json,
    status_error,
)
from app.providers.sessions import MAX_TOKEN_LIFETIME, TOKEN_PATTERN, IssuedToken, SessionTokens


def text_of(value: object) -> str:
    """A field's value as the templates see it (secrets in clear: only ever sent upstream)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _path_value(value: str) -> str:
    return quote(value, safe="")


def _request_uuid(request_id: str) -> str:
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        return str(uuid.uuid4())


def _body(template: JsonTemplate, values: Values) -> object:
    if isinstance(template, Template):
        return template.render(values)
    if isinstance(template, dict):
        return {k: _body(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_body(v, values) for v in template]
    return template


class DeclarativeProvider:
    """An adapter whose every rule comes from a definition."""

    def __init__(
        self,
        compiled: Compiled,
        settings: BaseModel,
        upstream: Upstream,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        definition = compiled.definition
        self.name = definition.name
        self.timeout = float(getattr(settings, "timeout", definition.timeout))
        self._compiled = compiled
        self._shown = definition.display_name
        self._upstream = upstream
        self._root = upstream.url("/").rstrip("/")
        self._settings = {f"settings.{name}": text_of(value) for name, value in settings}
        self._tokens: SessionTokens | None = None
        if compiled.session is not None:
            self._tokens = SessionTokens(
                self.name,
                self._login,
                refresh_margin=compiled.session.refresh_margin,
                clock=clock,
            )

    async def fetch_balance(self, account: BaseModel, call: CallContext) -> ProviderBalance:
        values: dict[str, str] = {f"account.{name}": text_of(value) for name, value in account}
        values.update(self._settings)
        values["request_id"] = call.request_id
        values["request_uuid"] = _request_uuid(call.request_id)
        if self._tokens is None:
            reply = await self._send(self._compiled.request, values)
            return self._read(reply, values)
        values["token"] = await self._tokens.token()
        reply = await self._send(self._compiled.request, values)
        if reply.status == 401:
            self._tokens.invalidate(values["token"])
            values["token"] = await self._tokens.token()
            reply = await self._send(self._compiled.request, values)
            if reply.status == 401:
                raise UpstreamAuthFailed(
                    f"{self._shown} refused a freshly issued token",
                    provider=self.name,
                    upstream_status=401,
                )
        return self._read(reply, values)

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.aclose()
        await self._upstream.aclose()

    async def _send(self, request: CompiledRequest, values: Values) -> Reply:
        headers = {name: template.render(values) for name, template in request.headers}
        session = self._compiled.session
        if session is not None and "token" in values:
            headers[session.header] = session.value.render(values)
        query = {name: template.render(values) for name, template in request.query}
        body = _body(request.json, values) if request.json is not None else None
        url = self._root + request.path.render(values, _path_value)
        outgoing = self._upstream.request(
            request.method, url, headers=headers, params=query or None, json=body
        )
        return await self._upstream.send(outgoing)

    def _read(self, reply: Reply, values: Values) -> ProviderBalance:
        compiled = self._compiled
        require_json(reply)
        body = parse_json(reply.body)
        for rule in compiled.errors:
            if rule.applies(reply, body, values):
                raise rule.error(reply, body, self._shown)
        if 200 <= reply.status < 300:
            if not all(check.holds(body, values) for check in compiled.success):
                raise self._invalid(reply, "answered without meeting its success conditions")
            if not all(check.holds(body, values) for check in compiled.checks):
                # An answer about another account, or one that does not say whose it is.
                raise self._invalid(reply, "answered for another account")
            points = compiled.balance.read(body)
            if points is None:
                raise self._invalid(reply, "answered without a plausible balance")
            return ProviderBalance(
                points=points,
                unit=compiled.unit.render(values),
                as_of=datetime.now(UTC),
                details=self._details(reply, body),
            )
        if (error := backoff_error(reply)) is not None:
            raise error
        if reply.status in (401, 403):
            raise UpstreamAuthFailed(
                f"{self._shown} refused the gateway's credentials",
                provider=self.name,
                upstream_status=reply.status,
            )
        raise status_error(reply)

    def _details(self, reply: Reply, body: object) -> Mapping[str, Decimal] | None:
        found: dict[str, Decimal] = {}
        for name, number in self._compiled.details:
            value = number.read(body)
            if value is not None:
                found[name] = value
            elif number.required:
                raise self._invalid(reply, f"answered without a plausible {name}")
        return found or None

    def _invalid(self, reply: Reply, what: str) -> UpstreamInvalidResponse:
        return UpstreamInvalidResponse(
            f"{self._shown} {what}", provider=self.name, upstream_status=reply.status
        )

    async def _login(self) -> IssuedToken:
        session = self._compiled.session
        assert session is not None
        reply = await self._send(session.login, self._settings)
        if reply.status in (401, 403):
            # Refused credentials are configuration, not a passing fault: never retried.
            raise UpstreamAuthFailed(
                f"{self._shown} refused the gateway's credentials at login",
                provider=self.name,
                upstream_status=reply.status,
            )
        if (error := backoff_error(reply)) is not None:
            raise error
        require_json(reply)
        body = parse_json(reply.body)
        detail = messages(session.message.find(body)) if session.message else None
        if not 200 <= reply.status < 300:
            raise status_error(reply, detail=detail)
        if not all(check.holds(body, self._settings) for check in session.success):
            raise UpstreamAuthFailed(
                detail or f"{self._shown} refused to issue a token",
                provider=self.name,
                upstream_status=reply.status,
            )
        return IssuedToken(
            self._token(reply, session, body), self._lifetime(reply, session, body), reply.status
        )

    def _token(self, reply: Reply, session: CompiledSession, body: object) -> str:
        token = session.token.find(body)
        if not isinstance(token, str) or TOKEN_PATTERN.fullmatch(token) is None:
            raise self._invalid(reply, "issued no usable token")
        return token

    def _lifetime(self, reply: Reply, session: CompiledSession, body: object) -> float:
        lifetime: int | None
        if session.expires_in is not None:
            lifetime = _int(session.expires_in.find(body))
        else:
            assert session.expires_at is not None
            expires = _int(session.expires_at.find(body))
            now = _int(session.now.find(body)) if session.now is not None else int(time.time())
            lifetime = expires - now if expires is not None and now is not None else None
        if lifetime is None or not 0 < lifetime <= MAX_TOKEN_LIFETIME:
            raise self._invalid(reply, "issued a token with an implausible lifetime")
        return float(lifetime)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

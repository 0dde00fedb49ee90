"""iamport access tokens: cached per process, refreshed early, one refresh at a time."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from app.observability import events
from app.providers import (
    Upstream,
    UpstreamAuthFailed,
    UpstreamInvalidResponse,
    backoff_error,
    is_int,
    require_json,
    status_error,
)
from app.providers.iamport_envelope import parse_envelope

MAX_TOKEN_LIFETIME = 24 * 3600
TOKEN_PATH = "/users/getToken"  # noqa: S105  (a path, not a password)
# Printable ASCII without spaces: nothing else can travel in an Authorization header.
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    deadline: float  # on the local monotonic clock, so the servers' clock skew cannot matter


class IamportTokenManager:
    """Hands out a valid iamport token, asking getToken only when needed and only once at a time."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        imp_key: str,
        imp_secret: SecretStr,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._token_url = upstream.url(TOKEN_PATH)
        self._imp_key = imp_key
        self._imp_secret = imp_secret
        self._provider = upstream.provider
        self._margin = refresh_margin
        self._clock = clock
        self._token: _Token | None = None
        self._refresh: asyncio.Task[_Token] | None = None
        self.refresh_count = 0
        self._last_status: int | None = None

    async def token(self) -> str:
        """A token valid for at least the refresh margin (or freshly issued)."""
        current = self._token
        if current is not None and self._clock() < current.deadline - self._margin:
            return current.value
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._fetch())
            self._refresh.add_done_callback(self._refresh_done)
        # Shielded: a caller that gives up (its deadline) must not cancel the shared refresh.
        return (await asyncio.shield(self._refresh)).value

    def invalidate(self, value: str) -> None:
        """Forget `value` after the upstream refused it (a no-op if it was already replaced)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    def _refresh_done(self, task: asyncio.Task[_Token]) -> None:
        self._refresh = None
        if not task.cancelled() and task.exception() is None:
            self._token = task.result()

    async def _fetch(self) -> _Token:
        self.refresh_count += 1
        began = time.perf_counter()
        error: BaseException | None = None
        self._last_status = None
        try:
            return await self._get_token()
        except BaseException as exc:
            error = exc
            raise
        finally:
            # One log line and one count per getToken call (metrics: token refreshes).
            events.token_refreshed(
                self._provider, error, self._last_status, time.perf_counter() - began
            )

    async def _get_token(self) -> _Token:
        started = self._clock()
        request = self._upstream.request(
            "POST",
            self._token_url,
            json={"imp_key": self._imp_key, "imp_secret": self._imp_secret.get_secret_value()},
        )
        reply = await self._upstream.send(request)
        self._last_status = reply.status
        name = self._provider
        if reply.status == 401:
            # A refused key or secret is configuration, not a passing fault: never retried.
            raise UpstreamAuthFailed(
                "iamport refused the gateway's API key (check imp_key and imp_secret)",
                provider=name,
                upstream_status=401,
            )
        if (error := backoff_error(reply)) is not None:
            raise error
        require_json(reply)
        envelope = parse_envelope(reply.body)
        if reply.status != 200:
            raise status_error(reply, detail=envelope.message if envelope else None)
        if envelope is None:
            raise UpstreamInvalidResponse(
                "iamport getToken answered without its envelope", provider=name, upstream_status=200
            )
        if envelope.code != 0:
            raise UpstreamAuthFailed(
                envelope.message or "iamport refused to issue a token",
                provider=name,
                upstream_status=200,
                upstream_code=str(envelope.code),
            )
        return self._parse_token(envelope.response, started)

    def _parse_token(self, response: dict[str, object] | None, started: float) -> _Token:
        response = response or {}
        value, now, expires = (response.get(k) for k in ("access_token", "now", "expired_at"))
        valid_token = isinstance(value, str) and _TOKEN.fullmatch(value) is not None
        if not (valid_token and is_int(now) and is_int(expires)):
            raise UpstreamInvalidResponse(
                "iamport getToken answer lacks access_token, now or expired_at",
                provider=self._provider,
                upstream_status=200,
            )
        assert isinstance(value, str)
        assert isinstance(now, int)
        assert isinstance(expires, int)
        lifetime = expires - now
        if not 0 < lifetime <= MAX_TOKEN_LIFETIME:
            raise UpstreamInvalidResponse(
                f"iamport issued a token with an implausible lifetime ({lifetime} s)",
                provider=self._provider,
                upstream_status=200,
            )
        return _Token(value, started + lifetime)

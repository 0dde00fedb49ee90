"""A provider session token: kept until it nearly expires, refreshed one at a time.

For providers that log in first (iamport's getToken, a definition's `auth: session`). The token's
deadline is on the local monotonic clock (`lifetime` as the provider counts it, from when the
login was sent), so the provider's clock skew cannot matter. However many requests wait, one
login runs; a caller that gives up does not cancel it for the others. With `refresh_ahead`, a
token inside the refresh margin but not yet expired keeps being handed out while the login runs in
the background; only a caller without a valid token waits for it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.errors import GatewayError, UpstreamTimeout
from app.observability import events

MAX_TOKEN_LIFETIME = 24 * 3600
# Printable ASCII without spaces: nothing else can travel in an Authorization header.
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,4096}")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What a login gave: the token, its lifetime in seconds, the login's HTTP status."""

    value: str
    lifetime: float
    status: int | None = None


@dataclass(frozen=True, slots=True)
class _Held:
    value: str
    deadline: float


class SessionTokens:
    """Hands out a valid token, logging in only when needed and only once at a time."""

    def __init__(
        self,
        provider: str,
        login: Callable[[], Awaitable[IssuedToken]],
        *,
        refresh_margin: float,
        clock: Callable[[], float] = time.monotonic,
        refresh_ahead: bool = False,
        login_timeout: float | None = None,
    ) -> None:
        self._provider = provider
        self._login = login
        self._margin = refresh_margin
        self._clock = clock
        self._ahead = refresh_ahead
        self._login_timeout = login_timeout
        self._held: _Held | None = None
        self._refresh: asyncio.Task[_Held] | None = None
        self.refresh_count = 0

    async def token(self) -> str:
        """A token valid for at least the refresh margin, or freshly issued; with `refresh_ahead`,
        the current one while it is valid at all (the refresh then runs without the caller)."""
        held = self._held
        now = self._clock()
        if held is not None and now < held.deadline - self._margin:
            return held.value
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._fetch())
            self._refresh.add_done_callback(self._refresh_done)
        if self._ahead and held is not None and now < held.deadline:
            return held.value
        # Shielded: a caller that gives up (its deadline) must not cancel the shared refresh.
        return (await asyncio.shield(self._refresh)).value

    async def aclose(self) -> None:
        """Cancel a login still running (nobody is left to use what it would bring)."""
        refresh = self._refresh
        if refresh is not None:
            refresh.cancel()
            # wait(), not await: the login's own outcome was logged, and is not the caller's.
            await asyncio.wait([refresh])

    def invalidate(self, value: str) -> None:
        """Forget `value` after the provider refused it (a no-op if it was already replaced)."""
        if self._held is not None and self._held.value == value:
            self._held = None

    def _refresh_done(self, task: asyncio.Task[_Held]) -> None:
        self._refresh = None
        # Reading the exception marks it retrieved: a failed refresh nobody awaited (one running
        # ahead) is logged and counted by _fetch, never reported as an unhandled task error.
        if not task.cancelled() and task.exception() is None:
            self._held = task.result()

    async def _fetch(self) -> _Held:
        self.refresh_count += 1
        began, started = time.perf_counter(), self._clock()
        error: BaseException | None = None
        status: int | None = None
        try:
            bound = asyncio.timeout(self._login_timeout)
            try:
                async with bound:
                    issued = await self._login()
            except TimeoutError:
                if not bound.expired():
                    raise
                raise UpstreamTimeout(
                    f"the login did not complete within {self._login_timeout} s",
                    provider=self._provider,
                ) from None
            status = issued.status
            return _Held(issued.value, started + issued.lifetime)
        except BaseException as exc:
            error = exc
            status = exc.upstream_status if isinstance(exc, GatewayError) else None
            raise
        finally:
            # One log line and one count per login (metrics: token refreshes).
            events.token_refreshed(self._provider, error, status, time.perf_counter() - began)

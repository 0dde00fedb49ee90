"""SessionTokens' login timeout: only its own bound becomes upstream_timeout."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import UpstreamTimeout
from app.providers.sessions import IssuedToken, SessionTokens


async def test_a_login_that_outlives_the_bound_is_an_upstream_timeout() -> None:
    async def hanging() -> IssuedToken:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    tokens = SessionTokens("acme", hanging, refresh_margin=0, login_timeout=0.01)
    with pytest.raises(UpstreamTimeout, match=r"within 0\.01 s") as caught:
        await tokens.token()
    assert caught.value.provider == "acme"


async def test_a_timeout_the_login_raises_itself_passes_through_unchanged() -> None:
    own = TimeoutError("the login's own timeout")

    async def timing_out() -> IssuedToken:
        raise own

    tokens = SessionTokens("acme", timing_out, refresh_margin=0, login_timeout=5.0)
    with pytest.raises(TimeoutError) as caught:
        await tokens.token()
    assert caught.value is own
    assert not isinstance(caught.value, UpstreamTimeout)

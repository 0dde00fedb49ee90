"""Every row of the error table renders as problem+json with its code, status and headers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from app.errors import (
    AccountNotLinked,
    Forbidden,
    GatewayError,
    InternalError,
    InvalidRequest,
    Overloaded,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
    UnknownProvider,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.problems import install_problem_handlers
from app.request_context import RequestIdMiddleware

TABLE: list[tuple[type[GatewayError], str, int, bool]] = [
    (UpstreamTimeout, "upstream_timeout", 504, False),
    (UpstreamUnreachable, "upstream_unreachable", 502, False),
    (UpstreamError, "upstream_error", 502, False),
    (UpstreamInvalidResponse, "upstream_invalid_response", 502, False),
    (UpstreamAuthFailed, "upstream_auth_failed", 502, False),
    (UpstreamRateLimited, "upstream_rate_limited", 503, True),
    (ProviderUnavailable, "provider_unavailable", 503, True),
    (ProviderRejected, "provider_rejected", 422, False),
    (UnknownProvider, "unknown_provider", 404, False),
    (AccountNotLinked, "account_not_linked", 404, False),
    (InvalidRequest, "invalid_request", 422, False),
    (Unauthorized, "unauthorized", 401, False),
    (Forbidden, "forbidden", 403, False),
    (RateLimited, "rate_limited", 429, True),
    (Overloaded, "overloaded", 503, True),
    (InternalError, "internal_error", 500, False),
]


def _app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def _get(app: FastAPI, path: str = "/boom") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


@pytest.mark.parametrize(("cls", "code", "status", "retry"), TABLE)
async def test_error_table_row(
    cls: type[GatewayError], code: str, status: int, retry: bool
) -> None:
    error = cls("what happened", provider="benepia", retry_after=7 if retry else None)
    response = await _get(_app_raising(error))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:points-gateway:problem:{code}"
    assert body["detail"] == "what happened"
    assert body["instance"] == "/boom"
    assert body["request_id"] == response.headers["x-request-id"]
    if retry:
        assert response.headers["retry-after"] == "7"
        assert body["retry_after"] == 7
    else:
        assert "retry-after" not in response.headers


async def test_unexpected_exception_is_500_without_internals() -> None:
    response = await _get(_app_raising(KeyError("secret-internal-name")))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] in body["detail"]
    assert "secret-internal-name" not in response.text
    assert "Traceback" not in response.text


def test_error_repr_names_code_not_detail() -> None:
    error = ProviderRejected("user said pw=hunter2", provider="benepia")
    assert "hunter2" not in repr(error)
    assert "provider_rejected" in repr(error)

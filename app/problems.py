"""RFC 9457 problem details: the model, how errors become problems, and the exception handlers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.answer_model import AnswerModel
from app.errors import GatewayError, InternalError, InvalidRequest, MethodNotAllowed, NotFound
from app.request_context import request_id_of
from app.route_walk import leaf_routes

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("points_gateway.errors")


def instance_of(request: Request) -> str:
    """The request path as a URI reference (percent-encoded: it may hold anything a caller sent)."""
    return quote(request.url.path, safe="/@.-_~")


def problem_type(code: str) -> str:
    """The `type` URI of a problem code (a stable URN; it is an identifier, not a page)."""
    return f"urn:points-gateway:problem:{code}"


class FieldError(AnswerModel):
    """One failed validation rule of an invalid request."""

    loc: list[str | int]
    msg: str
    type: str


def _is_none(value: object) -> bool:
    return value is None


def _optional(description: str | None = None) -> Any:
    # Members that do not apply are left out of the JSON rather than sent as null.
    return Field(default=None, description=description, exclude_if=_is_none)


class Problem(AnswerModel):
    """An RFC 9457 problem object with the gateway's extension members."""

    type: str = Field(examples=["urn:points-gateway:problem:upstream_timeout"])
    title: str
    status: int = Field(ge=100, le=599)
    detail: str
    instance: str | None = _optional()
    code: str = Field(description="Stable machine-readable error code; branch on this.")
    provider: str | None = _optional("The provider the problem concerns.")
    upstream_status: int | None = _optional("The provider's HTTP status.")
    upstream_code: str | None = _optional("The provider's own error code, as a string.")
    retry_after: int | None = _optional("Seconds to wait before retrying (as Retry-After).")
    request_id: str | None = _optional("Quote this when reporting a problem.")
    errors: list[FieldError] | None = _optional("What failed validation.")


def problem_from(error: GatewayError, *, instance: str | None, request_id: str | None) -> Problem:
    """Render a gateway error as a problem object."""
    return Problem(
        type=problem_type(error.code),
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
        code=error.code,
        provider=error.provider,
        upstream_status=error.upstream_status,
        upstream_code=error.upstream_code,
        retry_after=error.retry_after,
        request_id=request_id,
        errors=_field_errors(error.field_errors) or None,
    )


def problem_response(problem: Problem, *, headers: dict[str, str] | None = None) -> Response:
    """A problem+json response; 503/429 problems carry Retry-After."""
    all_headers = dict(headers or {})
    if problem.retry_after is not None:
        all_headers["Retry-After"] = str(problem.retry_after)
    body = problem.model_dump_json()
    return Response(body, problem.status, all_headers, media_type=PROBLEM_MEDIA_TYPE)


def _field_errors(errors: Sequence[object]) -> list[FieldError]:
    # The offending input is deliberately left out: it may hold a password.
    out: list[FieldError] = []
    for err in errors:
        if isinstance(err, dict):
            loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
            out.append(FieldError(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type"))))
    return out


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    rid = request_id_of(request.scope)
    problem = problem_from(exc, instance=instance_of(request), request_id=rid)
    return problem_response(problem, headers=exc.headers())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = InvalidRequest(
        "The request failed validation; see `errors`.", field_errors=exc.errors()
    )
    rid = request_id_of(request.scope)
    return problem_response(problem_from(error, instance=instance_of(request), request_id=rid))


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow names only the first route matching the path; list every one's methods.
    allowed: set[str] = set()
    for route in leaf_routes(request.app.router.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            allowed |= set(getattr(route, "methods", None) or ())
    return sorted(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error: GatewayError
    if exc.status_code == 404:
        error = NotFound("No such route.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed here.")
    else:
        error = InvalidRequest(str(exc.detail))
    rid = request_id_of(request.scope)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        problem_from(error, instance=instance_of(request), request_id=rid), headers=headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    rid = request_id_of(request.scope)
    log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
    error = InternalError(f"Unexpected error; quote request id {rid} when reporting it.")
    return problem_response(problem_from(error, instance=instance_of(request), request_id=rid))


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through problem+json."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

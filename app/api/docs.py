"""OpenAPI response declarations shared by the routers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.problems import Problem
from app.providers.registry import BUILTIN_PLUGINS

PROBLEM_DESCRIPTIONS = {
    401: "No or bad credentials (`unauthorized`).",
    403: "The caller may not act on this user (`forbidden`).",
    404: "Unknown provider, or no account linked (`unknown_provider`, `account_not_linked`).",
    422: "The request failed validation (`invalid_request`), or the provider refused the "
    "account (`provider_rejected`).",
    429: "The caller is over its rate limit (`rate_limited`).",
    500: "A gateway bug (`internal_error`); quote the request id.",
    502: "The provider failed (`upstream_error`, `upstream_unreachable`, "
    "`upstream_invalid_response`, `upstream_auth_failed`, `providers_failed`).",
    503: "Back off and retry after Retry-After (`upstream_rate_limited`, "
    "`provider_unavailable`, `overloaded`).",
    504: "The provider did not answer in time (`upstream_timeout`).",
}


def problems(*statuses: int, model: type[BaseModel] = Problem) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting problem+json answers for these statuses."""
    return {
        status: {"model": model, "description": PROBLEM_DESCRIPTIONS[status]} for status in statuses
    }


def account_body() -> dict[str, Any]:
    """`openapi_extra` describing a body that is one of the built-in providers' account schemas."""
    schemas = [plugin.account_model.model_json_schema() for plugin in BUILTIN_PLUGINS]
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": schemas}}},
        }
    }

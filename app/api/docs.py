"""OpenAPI response declarations and examples shared by the routers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from app.errors import GatewayError, UpstreamTimeout
from app.points.models import Balance, BalanceStatus, PointsAnswer
from app.problems import Problem, problem_from
from app.providers.base import ProviderPlugin

PROBLEM_DESCRIPTIONS = {
    401: "No or bad credentials (`unauthorized`).",
    403: "The caller may not act on this user (`forbidden`), or the account carries no proof "
    "that it is the caller's and the caller may not vouch for it (`ownership_proof_required`).",
    404: "Unknown provider, or no account linked (`unknown_provider`, `account_not_linked`).",
    409: "The stored credentials can no longer be read (`credentials_unreadable`); link the "
    "account again.",
    413: "The request body is over the size cap (`payload_too_large`).",
    422: "The request failed validation (`invalid_request`), or the provider refused the "
    "account (`provider_rejected`).",
    429: "The caller is over its rate limit, or its address over its failed authentications "
    "(`rate_limited`).",
    431: "The request headers are over the size cap (`headers_too_large`).",
    500: "A gateway bug (`internal_error`); quote the request id.",
    502: "The provider failed (`upstream_error`, `upstream_unreachable`, "
    "`upstream_invalid_response`, `upstream_auth_failed`, `providers_failed`).",
    503: "Back off and retry after Retry-After (`upstream_rate_limited`, "
    "`provider_unavailable`, `store_unavailable`, `overloaded`).",
    504: "The provider did not answer in time (`upstream_timeout`).",
}

_AS_OF = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
_CURRENCY = "1f1519903ed240578f071aa45cb479f2"


def _problem_example(error: GatewayError, instance: str) -> dict[str, Any]:
    problem = problem_from(error, instance=instance, request_id="4f9c2d1e8b7a4c3d")
    return problem.model_dump(mode="json")


def _benepia_ok() -> Balance:
    return Balance(
        provider="benepia",
        status=BalanceStatus.OK,
        points=Decimal(12000),
        unit="benepia_point",
        as_of=_AS_OF,
    )


def _gafapay_timeout() -> GatewayError:
    return UpstreamTimeout("gafapay did not answer within 2.5 s.", provider="gafapay")


def points_examples() -> dict[str, Any]:
    """Examples of get_user_points' 200: every provider answered, and only some did."""
    gafapay_ok = Balance(
        provider="gafapay",
        status=BalanceStatus.OK,
        points=Decimal("250.0"),
        unit=f"gafapay:{_CURRENCY}",
        as_of=_AS_OF,
        cached=True,
    )
    gafapay_failed = Balance(
        provider="gafapay",
        status=BalanceStatus.ERROR,
        error=problem_from(_gafapay_timeout(), instance=None, request_id=None),
    )
    complete = PointsAnswer(user_id="alice", complete=True, balances=[_benepia_ok(), gafapay_ok])
    partial = PointsAnswer(
        user_id="alice", complete=False, balances=[_benepia_ok(), gafapay_failed]
    )
    return {
        "complete": {
            "summary": "Every linked provider answered",
            "value": complete.model_dump(mode="json"),
        },
        "partial": {
            "summary": "One provider failed (X-Points-Complete: false)",
            "value": partial.model_dump(mode="json"),
        },
    }


def problem_examples(path: str) -> dict[str, Any]:
    """An example problem+json answer: a provider that timed out."""
    return {
        "upstream_timeout": {
            "summary": "The provider did not answer in time",
            "value": _problem_example(_gafapay_timeout(), path),
        }
    }


def problems(
    *statuses: int,
    model: type[BaseModel] = Problem,
    examples: dict[int, dict[str, Any]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting problem+json answers for these statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": model, "description": PROBLEM_DESCRIPTIONS[status]}
        if examples and status in examples:
            entry["content"] = {"application/json": {"examples": examples[status]}}
        out[status] = entry
    return out


ACCOUNT_EXAMPLES: dict[str, dict[str, Any]] = {
    "benepia": {
        "summary": "A Benepia login",
        "value": {"benepia_user": "alice.kim", "benepia_password": "correct-horse-battery"},
    },
    "gafapay": {
        "summary": "A GafaPay identity",
        "value": {"gafapay_user_id": "fb8f09210e0f46b7b4262d77f5b6c273", "currency_id": _CURRENCY},
    },
}


def account_schemas(plugins: Iterable[ProviderPlugin]) -> dict[str, dict[str, Any]]:
    """The providers' account bodies as named component schemas."""
    out: dict[str, dict[str, Any]] = {}
    for plugin in plugins:
        schema = plugin.account_model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[plugin.account_model.__name__] = schema
    return out


def account_body(plugin: ProviderPlugin) -> dict[str, Any]:
    """`openapi_extra` giving a route's body as exactly this provider's account schema."""
    media: dict[str, Any] = {
        "schema": {"$ref": f"#/components/schemas/{plugin.account_model.__name__}"}
    }
    if plugin.name in ACCOUNT_EXAMPLES:
        media["examples"] = {plugin.name: ACCOUNT_EXAMPLES[plugin.name]}
    return {
        "requestBody": {
            "required": True,
            "description": f"The {plugin.display_name} account's fields.",
            "content": {"application/json": media},
        }
    }

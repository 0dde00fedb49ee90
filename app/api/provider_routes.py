"""The operations addressed to one provider: its balance, a one-shot query, link and unlink.

A path parameter cannot pick a body schema, so a generic `{provider}` operation would document
every provider's account body for every provider. Each known provider (built in or installed
under the entry points) gets its own four operations instead: exact body schemas, one typed
method per provider in a generated client, and no templated path in the document overlapping a
concrete one. The `{provider}` forms stay, hidden from the document, so an unknown or
unconfigured name is answered `404 unknown_provider` as everywhere else.

Each operation kind has one handler, made per provider by `_handlers(name)`; the hidden forms
get the same handlers with the name read from the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api import accounts, points
from app.api.accounts import AccountFields, LinkedAccountInfo
from app.api.balance_route import BalanceRoute
from app.api.deps import GatewayDep, PointsQueryDep
from app.api.docs import account_body, problem_examples, problems
from app.api.params import UserId
from app.api.security_deps import READ_POINTS, WRITE_ACCOUNTS
from app.points.models import Balance
from app.providers.base import ProviderPlugin

VerifyQuery = Annotated[
    bool, Query(description="Ask the provider first; refuse credentials it rejects.")
]

_LINK_RESPONSES = {
    201: {"model": LinkedAccountInfo, "description": "Newly linked."},
    **problems(401, 403, 404, 422, 429, 500, 502, 503, 504),
}
_UNLINK_RESPONSES = problems(401, 403, 404, 422, 429, 500, 503)
_ONCE_RESPONSES = problems(401, 403, 404, 422, 429, 500, 502, 503, 504)

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Handlers:
    get_points: Handler
    query_once: Handler
    link: Handler
    unlink: Handler


def _handlers(fixed: str | None) -> _Handlers:
    """The four handlers for provider `fixed`, or for the one named in the path when None."""

    def name_of(request: Request) -> str:
        return fixed if fixed is not None else str(request.path_params["provider"])

    async def get_points(user_id: UserId, request: Request, query: PointsQueryDep) -> Response:
        return await points.one_balance(user_id, name_of(request), request, query)

    async def query_once(
        user_id: UserId, fields: AccountFields, request: Request, query: PointsQueryDep
    ) -> Response:
        return await accounts.query_once(name_of(request), fields, request, query)

    async def link(
        user_id: UserId,
        fields: AccountFields,
        request: Request,
        query: PointsQueryDep,
        verify: VerifyQuery = False,
    ) -> Response:
        return await accounts.link(user_id, name_of(request), fields, request, query, verify)

    async def unlink(user_id: UserId, request: Request, gateway: GatewayDep) -> Response:
        return await accounts.unlink(user_id, name_of(request), gateway)

    return _Handlers(get_points, query_once, link, unlink)


def _one_responses(name: str) -> dict[int | str, dict[str, Any]]:
    examples = {504: problem_examples(f"/users/alice/points/{name}")}
    return problems(401, 403, 404, 409, 422, 429, 500, 502, 503, 504, examples=examples)


def _add_provider(router: APIRouter, plugin: ProviderPlugin) -> None:
    name, shown = plugin.name, plugin.display_name
    ident = name.replace("-", "_")
    handle = _handlers(name)
    points_path, account_path = (
        f"/users/{{user_id}}/points/{name}",
        f"/users/{{user_id}}/accounts/{name}",
    )
    router.add_api_route(
        points_path,
        handle.get_points,
        methods=["GET"],
        operation_id=f"get_{ident}_points",
        summary=f"The user's {shown} balance",
        description=f"The balance of the user's linked {shown} account, or the mapped problem "
        "of its failure.",
        response_model=Balance,
        dependencies=[READ_POINTS],
        responses=_one_responses(name),
        tags=["points"],
        route_class_override=BalanceRoute,
    )
    router.add_api_route(
        points_path,
        handle.query_once,
        methods=["POST"],
        operation_id=f"query_{ident}_points_once",
        summary=f"The {shown} balance for credentials given now",
        description="For frontends that ask for a password at checkout: nothing of the body is "
        "stored, cached or logged.",
        response_model=Balance,
        dependencies=[READ_POINTS],
        responses=_ONCE_RESPONSES,
        openapi_extra=account_body(plugin),
        tags=["points"],
    )
    router.add_api_route(
        account_path,
        handle.link,
        methods=["PUT"],
        operation_id=f"link_{ident}_account",
        summary=f"Link or replace a {shown} account",
        description=f"Store the {shown} account's credentials (sealed); idempotent: 201 when "
        "newly linked, 200 when replaced. Secrets are write-only: no answer carries them back.",
        response_model=LinkedAccountInfo,
        status_code=200,
        dependencies=[WRITE_ACCOUNTS],
        responses=_LINK_RESPONSES,
        openapi_extra=account_body(plugin),
        tags=["accounts"],
    )
    router.add_api_route(
        account_path,
        handle.unlink,
        methods=["DELETE"],
        operation_id=f"unlink_{ident}_account",
        summary=f"Unlink the {shown} account",
        description=f"Forget the user's {shown} account and its credentials.",
        status_code=204,
        dependencies=[WRITE_ACCOUNTS],
        responses=_UNLINK_RESPONSES,
        tags=["accounts"],
    )


def _add_any_provider(router: APIRouter) -> None:
    handle = _handlers(None)
    points, accounts = "/users/{user_id}/points/{provider}", "/users/{user_id}/accounts/{provider}"
    for path, method, handler, scope in (
        (points, "GET", handle.get_points, READ_POINTS),
        (points, "POST", handle.query_once, READ_POINTS),
        (accounts, "PUT", handle.link, WRITE_ACCOUNTS),
        (accounts, "DELETE", handle.unlink, WRITE_ACCOUNTS),
    ):
        router.add_api_route(
            path,
            handler,
            methods=[method],
            dependencies=[scope],
            include_in_schema=False,
            route_class_override=BalanceRoute if handler is handle.get_points else None,
        )


def provider_router(plugins: Iterable[ProviderPlugin]) -> APIRouter:
    """Every known provider's operations, then the hidden `{provider}` forms."""
    router = APIRouter()
    for plugin in sorted(plugins, key=lambda p: p.name):
        _add_provider(router, plugin)
    _add_any_provider(router)
    return router

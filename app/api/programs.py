"""One operation per program for everything addressed to a single program.

A path parameter cannot pick a body schema, so a generic `{provider}` operation would document
every program's account body for every program. Each known program (built in or installed under
the entry points) gets its own operations instead: exact body schemas, one typed method per program
in a generated client, and no templated path in the document overlapping a concrete one.

The `{provider}` forms stay, hidden from the document, so an unknown or unconfigured name is
answered `404 unknown_provider` as everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api import accounts, points
from app.api.accounts import AccountFields, LinkedAccountInfo
from app.api.deps import AskingDep, GatewayDep
from app.api.docs import account_body, problem_examples, problems
from app.api.params import ProviderName, UserId
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


def _one_responses(name: str) -> dict[int | str, dict[str, object]]:
    examples = {504: problem_examples(f"/users/alice/points/{name}")}
    return problems(401, 403, 404, 409, 422, 429, 500, 502, 503, 504, examples=examples)


def _add_program(router: APIRouter, plugin: ProviderPlugin) -> None:
    name = plugin.name
    ident = name.replace("-", "_")
    shown = plugin.display_name

    async def get_points(user_id: UserId, request: Request, asking: AskingDep) -> Response:
        return await points.one_balance(user_id, name, request, asking)

    async def query_once(
        user_id: UserId,
        fields: AccountFields,
        request: Request,
        asking: AskingDep,
    ) -> Response:
        return await accounts.query_once(name, fields, request, asking)

    async def link(
        user_id: UserId,
        fields: AccountFields,
        request: Request,
        asking: AskingDep,
        verify: VerifyQuery = False,
    ) -> Response:
        return await accounts.link(user_id, name, fields, request, asking, verify)

    async def unlink(user_id: UserId, gateway: GatewayDep) -> Response:
        return await accounts.unlink(user_id, name, gateway)

    router.add_api_route(
        f"/users/{{user_id}}/points/{name}",
        get_points,
        methods=["GET"],
        operation_id=f"get_{ident}_points",
        summary=f"The user's {shown} balance",
        description=f"The balance of the user's linked {shown} account, or the mapped problem "
        "of its failure.",
        response_model=Balance,
        dependencies=[READ_POINTS],
        responses=_one_responses(name),
        tags=["points"],
    )
    router.add_api_route(
        f"/users/{{user_id}}/points/{name}",
        query_once,
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
        f"/users/{{user_id}}/accounts/{name}",
        link,
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
        f"/users/{{user_id}}/accounts/{name}",
        unlink,
        methods=["DELETE"],
        operation_id=f"unlink_{ident}_account",
        summary=f"Unlink the {shown} account",
        description=f"Forget the user's {shown} account and its credentials.",
        status_code=204,
        dependencies=[WRITE_ACCOUNTS],
        responses=_UNLINK_RESPONSES,
        tags=["accounts"],
    )


def _add_generic(router: APIRouter) -> None:
    @router.get(
        "/users/{user_id}/points/{provider}",
        include_in_schema=False,
        dependencies=[READ_POINTS],
    )
    async def get_points(
        user_id: UserId,
        provider: ProviderName,
        request: Request,
        asking: AskingDep,
    ) -> Response:
        return await points.one_balance(user_id, provider, request, asking)

    @router.post(
        "/users/{user_id}/points/{provider}",
        include_in_schema=False,
        dependencies=[READ_POINTS],
    )
    async def query_once(
        user_id: UserId,
        provider: ProviderName,
        fields: AccountFields,
        request: Request,
        asking: AskingDep,
    ) -> Response:
        return await accounts.query_once(provider, fields, request, asking)

    @router.put(
        "/users/{user_id}/accounts/{provider}",
        include_in_schema=False,
        dependencies=[WRITE_ACCOUNTS],
    )
    async def link(
        user_id: UserId,
        provider: ProviderName,
        fields: AccountFields,
        request: Request,
        asking: AskingDep,
        verify: VerifyQuery = False,
    ) -> Response:
        return await accounts.link(user_id, provider, fields, request, asking, verify)

    @router.delete(
        "/users/{user_id}/accounts/{provider}",
        include_in_schema=False,
        dependencies=[WRITE_ACCOUNTS],
    )
    async def unlink(user_id: UserId, provider: ProviderName, gateway: GatewayDep) -> Response:
        return await accounts.unlink(user_id, provider, gateway)


def program_router(plugins: Iterable[ProviderPlugin]) -> APIRouter:
    """Every known program's operations, then the hidden `{provider}` forms."""
    return _router_for(tuple(sorted(plugins, key=lambda p: p.name)))


@functools.cache
def _router_for(plugins: tuple[ProviderPlugin, ...]) -> APIRouter:
    # Built once per set of programs, like the module-level routers: building a route's
    # dependencies and response models takes milliseconds, and apps are made often in tests.
    router = APIRouter()
    for plugin in plugins:
        _add_program(router, plugin)
    _add_generic(router)
    return router

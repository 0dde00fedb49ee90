"""Linked accounts: link, list, unlink, and one-shot queries with credentials in the body."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from app.accounts.ownership import require_proof
from app.answer_model import AnswerModel
from app.api.deps import GatewayDep, PointsQuery
from app.api.docs import problems
from app.api.params import PERSONAL, UserId
from app.api.security_deps import READ_ACCOUNTS, principal_of
from app.errors import AccountNotLinked, InvalidRequest
from app.gateway import Gateway
from app.points.models import Balance
from app.problems import instance_of, problem_response
from app.providers.base import Ownership, ProviderPlugin
from app.request_context import request_id_of

router = APIRouter(tags=["accounts"])

AccountFields = Annotated[dict[str, object], Body(description="The provider's account fields.")]


class LinkedAccountInfo(AnswerModel):
    """A linked account as the gateway shows it: never a secret."""

    provider: str
    masked_id: str
    linked_at: datetime
    updated_at: datetime
    last_fetch_at: datetime | None


class LinkedAccountList(AnswerModel):
    """The user's linked accounts, in provider order."""

    user_id: str
    accounts: list[LinkedAccountInfo]


def _proven_account(
    gateway: Gateway, provider: str, fields: dict[str, object], request: Request
) -> tuple[ProviderPlugin, BaseModel, Ownership]:
    """The body as the provider's account, once the caller has proven it is theirs."""
    plugin = gateway.registry.plugin(provider)
    account = _parse_account(plugin, fields)
    return plugin, account, require_proof(plugin, account, principal_of(request))


def _parse_account(plugin: ProviderPlugin, fields: dict[str, object]) -> BaseModel:
    provider = plugin.name
    try:
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry lone surrogates (\ud800) that no provider could be sent.
        raise InvalidRequest("The body holds text that is not valid Unicode.") from None
    try:
        return plugin.account_model.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise InvalidRequest(
            f"The body is not a valid {provider} account; see `errors`.",
            field_errors=[{**err, "loc": ("body", *err["loc"])} for err in errors],
        ) from None


def _failure(request: Request, entry: Balance) -> Response | None:
    if entry.error is None:
        return None
    problem = entry.error.model_copy(
        update={"instance": instance_of(request), "request_id": request_id_of(request.scope)}
    )
    return problem_response(problem, headers=PERSONAL)


async def link(
    user_id: str,
    provider: str,
    fields: dict[str, object],
    request: Request,
    query: PointsQuery,
    verify: bool,
) -> Response:
    """Store the account's credentials (sealed); idempotent. Secrets are write-only."""
    gateway = query.gateway
    plugin, account, ownership = _proven_account(gateway, provider, fields, request)
    if verify:
        entry = await gateway.aggregator.account_balance(
            provider, account, query.call, query.options
        )
        failed = _failure(request, entry)
        if failed is not None:
            return failed
    masked = plugin.masked_id(account)
    info, created = await gateway.store.upsert(
        user_id, provider, account, masked_id=masked, ownership=ownership
    )
    # A balance cached for the old credentials must not be served for the new ones.
    await gateway.aggregator.forget(user_id, provider)
    body = LinkedAccountInfo.model_validate(info, from_attributes=True)
    return Response(
        body.model_dump_json(),
        status_code=201 if created else 200,
        media_type="application/json",
        headers=PERSONAL,
    )


async def query_once(
    provider: str,
    fields: dict[str, object],
    request: Request,
    query: PointsQuery,
) -> Response:
    """One provider's balance for the account in the body; nothing of it is kept."""
    gateway = query.gateway
    _, account, _ = _proven_account(gateway, provider, fields, request)
    entry = await gateway.aggregator.account_balance(provider, account, query.call, query.options)
    failed = _failure(request, entry)
    if failed is not None:
        return failed
    return Response(entry.model_dump_json(), media_type="application/json", headers=PERSONAL)


@router.get(
    "/users/{user_id}/accounts",
    operation_id="list_accounts",
    summary="The user's linked accounts",
    response_model=LinkedAccountList,
    dependencies=[READ_ACCOUNTS],
    responses=problems(401, 403, 422, 429, 500, 503),
)
async def list_accounts(user_id: UserId, gateway: GatewayDep) -> Response:
    """Linked providers with non-secret facts only (masked identifier, dates)."""
    infos = await gateway.store.accounts(user_id)
    body = LinkedAccountList(
        user_id=user_id,
        accounts=[LinkedAccountInfo.model_validate(i, from_attributes=True) for i in infos],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=PERSONAL)


async def unlink(user_id: str, provider: str, gateway: Gateway) -> Response:
    """Forget the account and its credentials."""
    gateway.registry.plugin(provider)  # an unknown name is 404 unknown_provider
    if not await gateway.store.delete(user_id, provider):
        raise AccountNotLinked(f"{user_id} has no {provider} account linked", provider=provider)
    await gateway.aggregator.forget(user_id, provider)
    return Response(status_code=204)

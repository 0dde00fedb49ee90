"""Points routes: the merged answer and the single-provider answer."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.balance_route import BalanceRoute
from app.api.deps import PointsQuery, PointsQueryDep
from app.api.docs import points_examples, problems
from app.api.params import PERSONAL, UserId
from app.api.security_deps import READ_POINTS
from app.errors import InvalidRequest
from app.points.models import PointsAnswer, PointsProblem
from app.points.status_policy import failure_problem
from app.problems import instance_of, problem_response
from app.request_context import request_id_of

# Its one route is the hot path: BalanceRoute reads its parameters (app/api/balance_route.py).
router = APIRouter(tags=["points"], route_class=BalanceRoute)

# Every comma-separated name holds something besides spaces and tabs (which are trimmed).
_FILTER_PATTERN = r"^[^,]*[^ \t,][^,]*(,[^,]*[^ \t,][^,]*)*$"
ProvidersFilter = Annotated[
    str | None,
    Query(
        max_length=512,
        description="Comma-separated provider names to narrow the answer to.",
        examples=["benepia,gafapay"],
        # Documented here, enforced in _parse_filter with a problem that says what is wrong.
        json_schema_extra={"pattern": _FILTER_PATTERN},
    ),
]


def _parse_filter(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    if not re.fullmatch(_FILTER_PATTERN, raw):
        raise InvalidRequest("`providers` must be a comma-separated list of provider names.")
    return list(dict.fromkeys(n.strip(" \t") for n in raw.split(",")))


@router.get(
    "/users/{user_id}/points",
    operation_id="get_user_points",
    summary="Every balance of a user, merged",
    response_model=PointsAnswer,
    dependencies=[READ_POINTS],
    responses={
        200: {
            "description": "At least one provider answered (or none is linked).",
            "content": {"application/json": {"examples": points_examples()}},
        },
        **problems(401, 403, 404, 409, 422, 429, 500),
        **problems(502, 503, 504, model=PointsProblem),
    },
)
async def get_user_points(
    user_id: UserId,
    request: Request,
    query: PointsQueryDep,
    providers: ProvidersFilter = None,
) -> Response:
    """Ask every linked provider at once and merge the answers.

    200 when at least one provider answered (`complete` says whether all did, as does the
    `X-Points-Complete` header); when every provider failed, the status they share (else 502)
    with the per-provider list in the problem.
    """
    only = _parse_filter(providers)
    answer = await query.gateway.aggregator.user_points(
        user_id, query.call, query.options, only=only
    )
    headers = {**PERSONAL, "x-points-complete": "true" if answer.complete else "false"}
    problem = failure_problem(user_id, answer.balances)
    if problem is not None:
        problem.instance = instance_of(request)
        problem.request_id = request_id_of(request.scope)
        return problem_response(problem, headers=headers)
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)


async def one_balance(
    user_id: str,
    provider: str,
    request: Request,
    query: PointsQuery,
) -> Response:
    """The balance of one linked provider, or the mapped problem of its failure."""
    entry = await query.gateway.aggregator.linked_balance(
        user_id, provider, query.call, query.options
    )
    if entry.error is not None:
        problem = entry.error.model_copy(
            update={"instance": instance_of(request), "request_id": request_id_of(request.scope)}
        )
        return problem_response(problem, headers=PERSONAL)
    return Response(entry.model_dump_json(), media_type="application/json", headers=PERSONAL)

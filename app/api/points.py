"""Points routes: the merged answer and the single-program answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import CallDep, GatewayDep, OptionsDep
from app.api.docs import points_examples, problem_examples, problems
from app.api.params import PERSONAL, ProviderName, UserId
from app.api.security_deps import READ_POINTS
from app.errors import InvalidRequest
from app.points.models import Balance, PointsAnswer, PointsProblem
from app.points.status_policy import failure_problem
from app.problems import instance_of, problem_response
from app.request_context import request_id_of

router = APIRouter(tags=["points"])

ProvidersFilter = Annotated[
    str | None,
    Query(
        max_length=512,
        description="Comma-separated provider names to narrow the answer to.",
        examples=["benepia,gafapay"],
    ),
]


def _parse_filter(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = list(dict.fromkeys(n.strip() for n in raw.split(",")))
    if not all(names):
        raise InvalidRequest("`providers` must be a comma-separated list of provider names.")
    return names


@router.get(
    "/users/{user_id}/points",
    operation_id="get_user_points",
    summary="Every balance of a user, merged",
    response_model=PointsAnswer,
    dependencies=[READ_POINTS],
    responses={
        200: {
            "description": "At least one program answered (or none is linked).",
            "content": {"application/json": {"examples": points_examples()}},
        },
        **problems(401, 403, 404, 409, 422, 429, 500),
        **problems(502, 503, 504, model=PointsProblem),
    },
)
async def get_user_points(
    user_id: UserId,
    request: Request,
    gateway: GatewayDep,
    call: CallDep,
    options: OptionsDep,
    providers: ProvidersFilter = None,
) -> Response:
    """Ask every linked program at once and merge the answers.

    200 when at least one program answered (`complete` says whether all did, as does the
    `X-Points-Complete` header); when every program failed, the status they share (else 502)
    with the per-program list in the problem.
    """
    only = _parse_filter(providers)
    answer = await gateway.aggregator.user_points(user_id, call, options, only=only)
    headers = {**PERSONAL, "x-points-complete": "true" if answer.complete else "false"}
    problem = failure_problem(user_id, answer.balances)
    if problem is not None:
        problem.instance = instance_of(request)
        problem.request_id = request_id_of(request.scope)
        return problem_response(problem, headers=headers)
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)


@router.get(
    "/users/{user_id}/points/{provider}",
    operation_id="get_user_provider_points",
    summary="One program's balance of a user",
    response_model=Balance,
    dependencies=[READ_POINTS],
    responses=problems(
        401,
        403,
        404,
        409,
        422,
        429,
        500,
        502,
        503,
        504,
        examples={504: problem_examples("/users/alice/points/gafapay")},
    ),
)
async def get_user_provider_points(
    user_id: UserId,
    provider: ProviderName,
    request: Request,
    gateway: GatewayDep,
    call: CallDep,
    options: OptionsDep,
) -> Response:
    """The balance of one linked program, or the mapped problem of its failure."""
    entry = await gateway.aggregator.one(user_id, provider, call, options)
    if entry.error is not None:
        problem = entry.error.model_copy(
            update={"instance": instance_of(request), "request_id": request_id_of(request.scope)}
        )
        return problem_response(problem, headers=PERSONAL)
    return Response(entry.model_dump_json(), media_type="application/json", headers=PERSONAL)

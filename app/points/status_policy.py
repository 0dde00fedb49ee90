"""The HTTP status of an aggregated answer, from its per-provider entries."""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import ProvidersFailed
from app.points.models import Balance, PointsProblem
from app.problems import problem_type


def failure_problem(user_id: str, balances: Sequence[Balance]) -> PointsProblem | None:
    """None when at least one provider answered (or none are linked); else the all-failed problem.

    All failures sharing one status keep it (503s carry the smallest Retry-After), and one code
    too when they share it; otherwise 502 `providers_failed`.
    """
    errors = [b.error for b in balances if b.error is not None]
    if not balances or len(errors) < len(balances):
        return None
    kinds = {(e.status, e.code, e.title) for e in errors}
    if len(kinds) == 1:
        ((status, code, title),) = kinds
    else:
        statuses = {status for status, _, _ in kinds}
        status = statuses.pop() if len(statuses) == 1 else ProvidersFailed.status
        code, title = ProvidersFailed.code, ProvidersFailed.title
    waits = [e.retry_after for e in errors if e.retry_after is not None]
    retry_after = (min(waits) if waits else 1) if status == 503 else None
    names = ", ".join(b.provider for b in balances)
    return PointsProblem(
        type=problem_type(code),
        title=title,
        status=status,
        detail=f"No linked provider answered ({names}); see `balances`.",
        code=code,
        retry_after=retry_after,
        user_id=user_id,
        balances=list(balances),
    )

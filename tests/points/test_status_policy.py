"""failure_problem: the HTTP status of an aggregated answer, from its per-provider entries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.errors import (
    AccountNotLinked,
    GatewayError,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.points.models import Balance, PointsProblem
from app.points.status_policy import failure_problem
from app.problems import problem_from, problem_response, problem_type


def ok(provider: str) -> Balance:
    return Balance(
        provider=provider,
        status="ok",
        points=Decimal("12000"),
        unit=f"{provider}_point",
        as_of=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
    )


def failed(provider: str, error: GatewayError) -> Balance:
    error.provider = provider
    return Balance(
        provider=provider,
        status="error",
        error=problem_from(error, instance=None, request_id=None),
    )


def must_fail(balances: list[Balance]) -> PointsProblem:
    problem = failure_problem("alice", balances)
    assert problem is not None
    return problem


def test_no_linked_programs_is_not_a_failure() -> None:
    assert failure_problem("alice", []) is None


def test_all_ok_is_not_a_failure() -> None:
    assert failure_problem("alice", [ok("benepia"), ok("gafapay")]) is None


def test_one_ok_one_error_is_not_a_failure() -> None:
    balances = [ok("benepia"), failed("gafapay", UpstreamTimeout("slow"))]
    assert failure_problem("alice", balances) is None


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (UpstreamTimeout, 504, "upstream_timeout"),
        (UpstreamError, 502, "upstream_error"),
        (ProviderRejected, 422, "provider_rejected"),
        (AccountNotLinked, 404, "account_not_linked"),
    ],
)
def test_all_failed_alike_keeps_status_and_code(
    kind: type[GatewayError], status: int, code: str
) -> None:
    problem = must_fail([failed("benepia", kind("a")), failed("gafapay", kind("b"))])
    assert problem.status == status
    assert problem.code == code
    assert problem.type == problem_type(code)
    assert problem.title == kind.title
    assert problem.retry_after is None
    assert problem.complete is False
    assert problem.user_id == "alice"


def test_single_program_failure_keeps_its_status() -> None:
    problem = must_fail([failed("gafapay", UpstreamTimeout("slow"))])
    assert (problem.status, problem.code) == (504, "upstream_timeout")
    assert problem.title == UpstreamTimeout.title


def test_same_status_different_codes_is_providers_failed() -> None:
    problem = must_fail(
        [failed("benepia", UpstreamError("500")), failed("gafapay", UpstreamUnreachable("dns"))]
    )
    assert problem.status == 502
    assert problem.code == "providers_failed"
    assert problem.type == problem_type("providers_failed")
    assert problem.title == "Every provider failed"


def test_different_statuses_is_502_providers_failed() -> None:
    problem = must_fail(
        [failed("benepia", UpstreamTimeout("slow")), failed("gafapay", ProviderRejected("no"))]
    )
    assert problem.status == 502
    assert problem.code == "providers_failed"
    assert problem.retry_after is None


@pytest.mark.parametrize(
    ("benepia", "gafapay", "code", "retry_after"),
    [
        pytest.param(
            UpstreamRateLimited("slow down", retry_after=7),
            UpstreamRateLimited("slow down", retry_after=3),
            "upstream_rate_limited",
            3,
            id="same-code",
        ),
        pytest.param(
            ProviderUnavailable("open circuit", retry_after=30),
            UpstreamRateLimited("slow down", retry_after=12),
            "providers_failed",
            12,
            id="different-codes",
        ),
    ],
)
def test_all_503_keep_503_and_the_smallest_retry_after(
    benepia: GatewayError, gafapay: GatewayError, code: str, retry_after: int
) -> None:
    problem = must_fail([failed("benepia", benepia), failed("gafapay", gafapay)])
    assert problem.status == 503
    assert problem.code == code
    assert problem.retry_after == retry_after


def test_503_without_any_retry_after_still_gets_one() -> None:
    problem = must_fail([failed("gafapay", ProviderUnavailable("open circuit"))])
    assert problem.status == 503
    assert problem.retry_after is not None
    assert problem.retry_after >= 1


def test_every_503_without_a_retry_after_answers_retry_after_1() -> None:
    # Kills: the default Retry-After for all-503-without-one changed from 1 (e.g. to 2 or None).
    problem = must_fail(
        [
            failed("benepia", ProviderUnavailable("open circuit")),
            failed("gafapay", ProviderUnavailable("open circuit")),
        ]
    )
    assert (problem.status, problem.retry_after) == (503, 1)
    assert problem_response(problem).headers["Retry-After"] == "1"


def test_detail_lists_providers_and_balances_are_carried() -> None:
    balances = [failed("benepia", UpstreamTimeout("slow")), failed("gafapay", UpstreamError("x"))]
    problem = must_fail(balances)
    assert "benepia" in problem.detail
    assert "gafapay" in problem.detail
    assert problem.balances == balances
    assert [b.provider for b in problem.balances] == ["benepia", "gafapay"]
    for balance in problem.balances:
        assert balance.status == "error"
        assert balance.error is not None
        assert balance.error.provider == balance.provider


def test_problem_serialises_balances_and_omits_unset_members() -> None:
    problem = must_fail([failed("gafapay", UpstreamTimeout("slow"))])
    body = problem.model_dump(mode="json")
    assert body["balances"][0]["error"]["code"] == "upstream_timeout"
    assert body["complete"] is False
    assert "retry_after" not in body
    assert "instance" not in body

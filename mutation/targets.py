"""The decision modules `make mutate` mutates, and the tests that may kill their mutants."""

from __future__ import annotations

from dataclasses import dataclass

TARGET_RATIO = 0.90


@dataclass(frozen=True, slots=True)
class Target:
    """A module, the test paths whose coverage picks each mutant's tests, and its own tests.

    A mutant runs the tests that execute its lines. A line none executes in-process (run only at
    import, like a constant, a default or a `Field(gt=0)`, or only in a server subprocess) runs
    `own`: the tests written for this module, and the OpenAPI drift test where its models are in
    the document.
    """

    path: str
    tests: tuple[str, ...]
    own: tuple[str, ...]

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


DRIFT = "tests/api/test_openapi_drift.py"

TARGETS = (
    Target(
        "app/points/status_policy.py", ("tests/points",), ("tests/points/test_status_policy.py",)
    ),
    Target(
        "app/providers/gafapay.py",
        ("tests/providers", "tests/definitions"),
        ("tests/providers/test_gafapay.py", "tests/providers/test_adapter_models.py", DRIFT),
    ),
    Target(
        "app/providers/benepia.py",
        ("tests/providers",),
        ("tests/providers/test_benepia.py", "tests/providers/test_adapter_models.py", DRIFT),
    ),
    Target(
        "app/providers/iamport_token.py",
        ("tests/providers",),
        ("tests/providers/test_iamport_token.py",),
    ),
    Target(
        "app/providers/sessions.py",
        ("tests/providers", "tests/definitions"),
        (
            "tests/providers/test_session_tokens.py",
            "tests/providers/test_iamport_token.py",
            "tests/providers/test_sdk.py",
            "tests/definitions/test_session_auth.py",
        ),
    ),
    Target("app/resilience/retry.py", ("tests/resilience",), ("tests/resilience/test_retries.py",)),
    Target(
        "app/resilience/retry_budget.py",
        ("tests/resilience",),
        ("tests/resilience/test_retries.py",),
    ),
    Target(
        "app/resilience/breaker.py", ("tests/resilience",), ("tests/resilience/test_breaker.py",)
    ),
    Target("app/security/policy.py", ("tests/security",), ("tests/security/test_bola.py",)),
    Target("app/security/jwt_verifier.py", ("tests/security",), ("tests/security/test_auth.py",)),
    Target("app/accounts/sealing.py", ("tests/accounts",), ("tests/accounts/test_sealing.py",)),
)

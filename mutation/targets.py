"""The decision modules `make mutate` mutates, and the tests that may kill their mutants."""

from __future__ import annotations

from dataclasses import dataclass

TARGET_RATIO = 0.90


@dataclass(frozen=True, slots=True)
class Target:
    """A module and the test paths run for it (each mutant runs only those that reach its lines)."""

    path: str
    tests: tuple[str, ...]

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


TARGETS = (
    Target("app/points/status_policy.py", ("tests/points",)),
    Target("app/providers/gafapay.py", ("tests/providers", "tests/definitions")),
    Target("app/providers/benepia.py", ("tests/providers",)),
    Target("app/providers/iamport_token.py", ("tests/providers",)),
    Target("app/providers/sessions.py", ("tests/providers", "tests/definitions")),
    Target("app/resilience/retry.py", ("tests/resilience",)),
    Target("app/resilience/retry_budget.py", ("tests/resilience",)),
    Target("app/resilience/breaker.py", ("tests/resilience",)),
    Target("app/security/policy.py", ("tests/security",)),
    Target("app/security/jwt_verifier.py", ("tests/security",)),
    Target("app/accounts/sealing.py", ("tests/accounts",)),
)

"""A retry budget: retries may add at most a fixed share to a provider's calls."""

from __future__ import annotations


class RetryBudget:
    """Each call earns `ratio` of a retry, each retry spends one; a small reserve starts it off.

    Under a sustained outage of N calls at most `reserve + ratio * N` retries are made, so an
    outage is never multiplied (the retry-budget idea from Finagle and gRPC).
    """

    def __init__(self, *, ratio: float, reserve: float = 3.0) -> None:
        self._ratio = ratio
        self._cap = max(reserve, 1.0)
        self._tokens = reserve

    def record_call(self) -> None:
        """A first attempt was made."""
        self._tokens = min(self._cap, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        """Take one retry from the budget if there is one."""
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

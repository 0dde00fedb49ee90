"""The gateway's error taxonomy: every failure a client can see is one of these classes.

Read it like httpx's exception tree: one base, a few families, each class knowing its stable
problem `code` and HTTP status. One exception handler (app/problems.py) renders them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class ConfigurationError(Exception):
    """The settings cannot start the gateway; the message says what to set (never a problem).

    It may carry several `problems`, so an operator fixes every one of them in one go.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class GatewayError(Exception):
    """Base of every error the gateway turns into an RFC 9457 problem."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        upstream_code: str | None = None,
        retry_after: int | None = None,
        field_errors: Sequence[Mapping[str, object]] = (),
    ) -> None:
        self.detail = detail or self.title
        self.field_errors = list(field_errors)
        self.provider = provider
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code
        self.retry_after = retry_after
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, provider={self.provider!r})"

    def headers(self) -> dict[str, str]:
        """Extra response headers this problem calls for (Retry-After is added for everyone)."""
        return {}


class InternalError(GatewayError):
    """Anything unexpected: a bug in the gateway."""


# --- Failures of one provider call -------------------------------------------------------------


class ProviderError(GatewayError):
    """A provider call failed (which failures are retried: app/resilience/retry.py)."""


class UpstreamTimeout(ProviderError):
    code = "upstream_timeout"
    status = 504
    title = "The provider did not answer in time"


class UpstreamUnreachable(ProviderError):
    code = "upstream_unreachable"
    status = 502
    title = "The provider could not be reached"


class UpstreamError(ProviderError):
    code = "upstream_error"
    status = 502
    title = "The provider failed"


class UpstreamInvalidResponse(ProviderError):
    code = "upstream_invalid_response"
    status = 502
    title = "The provider's answer broke its contract"


class UpstreamAuthFailed(ProviderError):
    code = "upstream_auth_failed"
    status = 502
    title = "The provider refused the gateway's credentials"


class UpstreamRateLimited(ProviderError):
    code = "upstream_rate_limited"
    status = 503
    title = "The provider asked the gateway to slow down"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    status = 503
    title = "The provider is temporarily unavailable"


class ProviderRejected(ProviderError):
    code = "provider_rejected"
    status = 422
    title = "The provider refused the request for this account"


# --- Failures of the caller's request -----------------------------------------------------------


class UnknownProvider(GatewayError):
    code = "unknown_provider"
    status = 404
    title = "No such provider"


class AccountNotLinked(GatewayError):
    code = "account_not_linked"
    status = 404
    title = "The user has no account linked for this provider"


class InvalidRequest(GatewayError):
    code = "invalid_request"
    status = 422
    title = "The request is not valid"


class NotFound(GatewayError):
    code = "not_found"
    status = 404
    title = "No such resource"


class MethodNotAllowed(GatewayError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class Unauthorized(GatewayError):
    code = "unauthorized"
    status = 401
    title = "Missing or invalid credentials"

    def headers(self) -> dict[str, str]:
        return {"www-authenticate": 'Bearer realm="points-gateway"'}


class Forbidden(GatewayError):
    code = "forbidden"
    status = 403
    title = "Not allowed for this user"


class OwnershipProofRequired(GatewayError):
    """The account offers no proof that it is the caller's, and the caller may not vouch for it."""

    code = "ownership_proof_required"
    status = 403
    title = "The account's ownership is not proven"


class RateLimited(GatewayError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class Overloaded(GatewayError):
    code = "overloaded"
    status = 503
    title = "The gateway is overloaded"


class ProvidersFailed(GatewayError):
    """Every provider of an aggregated answer failed, and not all in the same way."""

    code = "providers_failed"
    status = 502
    title = "Every provider failed"


# --- Failures of the linked-account store ------------------------------------------------------


class StoreUnavailable(GatewayError):
    code = "store_unavailable"
    status = 503
    title = "The account store is unavailable"


class CredentialsUnreadable(GatewayError):
    """A stored credential failed to decrypt or authenticate: re-link the account."""

    code = "credentials_unreadable"
    status = 409
    title = "The stored credentials for this account cannot be read"

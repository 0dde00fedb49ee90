"""The provider SDK: everything an adapter for a points provider needs, and nothing else.

A plugin imports from this module only (docs/writing-a-provider.md walks one end to end):

- the interface it implements and how it plugs in: `PointsProvider`, `ProviderPlugin`,
  `ProviderDeps`, `ProviderBalance`, `CallContext`;
- the outbound seam: `Upstream` (from `deps.upstream(base_url, timeout)`), its `Reply`;
- the errors an adapter raises (`ProviderError` and its family);
- the reply helpers: `parse_json`, `require_json`, `backoff_error`, `status_error`,
  `points_value`, `is_int`, `upstream_text`, `retry_after_seconds`;
- settings and account field types: `BaseUrl`, `Identifier`; ownership: `Proof`, `Ownership`;
- `mask` and `expect`.
"""

from app.errors import (
    ConfigurationError,
    ProviderError,
    ProviderRejected,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.outbound.upstream import OutboundRequest, Reply, Upstream
from app.providers.base import (
    CallContext,
    Identifier,
    Ownership,
    PointsProvider,
    Proof,
    ProviderBalance,
    ProviderDeps,
    ProviderPlugin,
    expect,
    mask,
)
from app.providers.replies import (
    backoff_error,
    is_int,
    parse_json,
    points_value,
    require_json,
    retry_after_seconds,
    status_error,
    upstream_text,
)
from app.providers.urls import BaseUrl

__all__ = [
    "BaseUrl",
    "CallContext",
    "ConfigurationError",
    "Identifier",
    "OutboundRequest",
    "Ownership",
    "PointsProvider",
    "Proof",
    "ProviderBalance",
    "ProviderDeps",
    "ProviderError",
    "ProviderPlugin",
    "ProviderRejected",
    "Reply",
    "Upstream",
    "UpstreamAuthFailed",
    "UpstreamError",
    "UpstreamInvalidResponse",
    "UpstreamRateLimited",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "backoff_error",
    "expect",
    "is_int",
    "mask",
    "parse_json",
    "points_value",
    "require_json",
    "retry_after_seconds",
    "status_error",
    "upstream_text",
]

"""Provider base URLs: absolute http(s) URLs without query, fragment or trailing slash."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ValidationInfo


def _check_base_url(value: str, info: ValidationInfo) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    allow_http = isinstance(info.context, dict) and info.context.get("allow_http") is True
    if parts.scheme == "http" and not allow_http:
        raise ValueError("must use https (plain http only with POINTS_SANDBOX=true)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or credentials")
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
"""A provider base URL; https unless validated with context `{"allow_http": True}` (the sandbox)."""

"""Reading an upstream's reply: JSON with exact decimals, statuses, Retry-After, balances.

The helpers every adapter uses on a `Reply`; the errors they raise name the reply's provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime

from app.errors import UpstreamError, UpstreamInvalidResponse, UpstreamRateLimited
from app.outbound.upstream import Reply

_DIGITS = re.compile(r"[0-9]{1,18}")
MAX_RETRY_AFTER = 3600
DEFAULT_RETRY_AFTER = 1


def require_json(reply: Reply) -> None:
    """A 200 that names a content type must name JSON (a missing header is let through)."""
    declared = reply.headers.get("content-type")
    if reply.status != 200 or declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media not in ("application/json", "text/json") and not media.endswith("+json"):
        raise UpstreamInvalidResponse(
            f"{reply.provider} answered 200 with content type {upstream_text(media, limit=60)!r}",
            provider=reply.provider,
            upstream_status=200,
        )


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> object | None:
    """Parse JSON keeping fractions exact (Decimal); None when the body is not JSON."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constants)  # type: ignore[no-any-return]
    except (ValueError, ArithmeticError, RecursionError):
        return None


def upstream_text(value: object, *, limit: int = 500) -> str | None:
    """An upstream message fit to pass on: real text (no lone surrogates or controls), bounded."""
    if not isinstance(value, str):
        return None
    text = value.encode("utf-8", "replace").decode("utf-8")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:limit] or None


def is_int(value: object) -> bool:
    """A JSON integer (bool is an int subclass in Python, and never a valid count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def retry_after_seconds(headers: Mapping[str, str]) -> int | None:
    """Retry-After as whole seconds (delta or HTTP date), clamped to [1, 3600]; None if absent."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if _DIGITS.fullmatch(raw):
        seconds = int(raw)
    else:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = int((when - datetime.now(UTC)).total_seconds())
    return max(1, min(seconds, MAX_RETRY_AFTER))


def backoff_error(reply: Reply) -> UpstreamRateLimited | None:
    """A 429, or a 503 that names a Retry-After, means the upstream asked us to back off."""
    retry_after = retry_after_seconds(reply.headers)
    if reply.status == 429 or (reply.status == 503 and retry_after is not None):
        return UpstreamRateLimited(
            f"{reply.provider} asked the gateway to slow down",
            provider=reply.provider,
            upstream_status=reply.status,
            retry_after=retry_after or DEFAULT_RETRY_AFTER,
        )
    return None


def status_error(
    reply: Reply, *, detail: str | None = None, upstream_code: str | None = None
) -> UpstreamError:
    """An upstream failure status we have no better name for."""
    return UpstreamError(
        detail or f"{reply.provider} answered HTTP {reply.status}",
        provider=reply.provider,
        upstream_status=reply.status,
        upstream_code=upstream_code,
    )


MAX_POINTS_DIGITS = 18


def points_value(value: object) -> Decimal | None:
    """A JSON number as a plain-notation Decimal, or None if it is not a plausible balance."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    # Checked on the exponent alone: arithmetic on a value like 1e1000000 would trap.
    if not number.is_finite() or number.adjusted() >= MAX_POINTS_DIGITS:
        return None
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -8:
        return None
    # "1e3" from upstream is shown as "1000", never in exponent notation.
    return Decimal(format(number, "f"))

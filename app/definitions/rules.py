"""What a definition's answers are read with: conditions, statuses, amounts and error rules.

Every rule is compiled once, when the definition loads; reading an answer never parses a path or
a template again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.definitions.format import Amount, Condition, ErrorRule, StatusSpec, When
from app.definitions.paths import MISSING, Path
from app.definitions.templates import Template
from app.providers import (
    ProviderError,
    ProviderRejected,
    Reply,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    is_int,
    points_value,
    retry_after_seconds,
    upstream_text,
)

# A plain decimal written as a string: "1234.50", "-3", never "1e3", "12,000" or " 12".
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")
MAX_MESSAGES = 20


def same_hex(a: str, b: str) -> bool:
    """Hex ids compared as GafaPay does: case- and leading-zero-insensitive."""
    return a.lower().lstrip("0") == b.lower().lstrip("0")


Values = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a value must equal: a JSON scalar, or a template rendered per request."""

    value: str | int | bool | Template | None
    compare: str

    @classmethod
    def of(cls, equals: str | int | bool | None, compare: str, known: set[str]) -> Expected:
        value = Template.parse(equals, known) if isinstance(equals, str) else equals
        return cls(value, compare)

    def matches(self, found: object, values: Values) -> bool:
        expected = self.value.render(values) if isinstance(self.value, Template) else self.value
        if self.compare == "hex_id":
            return (
                isinstance(found, str) and isinstance(expected, str) and same_hex(found, expected)
            )
        if self.compare == "text":
            text = str(found) if is_int(found) or isinstance(found, str) else None
            return text is not None and text == str(expected)
        # Types count: JSON `true` is not 1, `1.0` is not 1, `"1"` is not 1.
        if expected is None or isinstance(expected, bool):
            return found is expected
        if isinstance(expected, int):
            return is_int(found) and found == expected
        return isinstance(found, str) and found == expected


@dataclass(frozen=True, slots=True)
class Check:
    """A value of the answer equals what is expected."""

    path: Path
    expected: Expected

    @classmethod
    def of(cls, condition: Condition, known: set[str]) -> Check:
        return cls(
            Path.parse(condition.path), Expected.of(condition.equals, condition.compare, known)
        )

    def holds(self, body: object, values: Values) -> bool:
        found = self.path.find(body)
        return found is not MISSING and self.expected.matches(found, values)


@dataclass(frozen=True, slots=True)
class Statuses:
    """A set of HTTP statuses, as ranges."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, spec: StatusSpec | list[StatusSpec]) -> Statuses:
        out: list[tuple[int, int]] = []
        for item in spec if isinstance(spec, list) else [spec]:
            if isinstance(item, int):
                out.append((item, item))
            elif item.endswith("xx"):
                out.append((int(item[0]) * 100, int(item[0]) * 100 + 99))
            else:
                low, high = item.split("-")
                out.append((int(low), int(high)))
        return cls(tuple(out))

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and any(lo <= status <= hi for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class Number:
    """An amount of the answer: exact, never a float, never a guess."""

    path: Path
    integer: bool
    strings: bool
    required: bool

    @classmethod
    def of(cls, amount: Amount) -> Number:
        strings = amount.accept == "number_or_string"
        return cls(Path.parse(amount.path), amount.type == "integer", strings, amount.required)

    def read(self, body: object) -> Decimal | None:
        """The amount, or None when it is missing or not a plain number."""
        value = self.path.find(body)
        if isinstance(value, str) and self.strings and _PLAIN_DECIMAL.fullmatch(value):
            value = int(value) if "." not in value else Decimal(value)
        if self.integer and not is_int(value):
            return None
        return points_value(value)


def messages(value: object) -> str | None:
    """Upstream text fit to pass on: a string, or up to 20 strings of a list joined by "; "."""
    items = value if isinstance(value, list) else [value]
    texts = [text for text in map(upstream_text, items[:MAX_MESSAGES]) if text]
    return upstream_text("; ".join(texts), limit=1000)


@dataclass(frozen=True, slots=True)
class Rule:
    """An error rule: when it applies, and the problem it raises."""

    statuses: Statuses | None
    check: Check | None
    code: str
    message: Path | None
    upstream_code: Path | None

    @classmethod
    def of(cls, rule: ErrorRule, known: set[str]) -> Rule:
        when: When = rule.when
        check = None
        if when.path is not None:
            check = Check(Path.parse(when.path), Expected.of(when.equals, when.compare, known))
        return cls(
            Statuses.of(when.status) if when.status is not None else None,
            check,
            rule.code,
            Path.parse(rule.message) if rule.message else None,
            Path.parse(rule.upstream_code) if rule.upstream_code else None,
        )

    def applies(self, reply: Reply, body: object, values: Values) -> bool:
        if self.statuses is not None and reply.status not in self.statuses:
            return False
        return self.check is None or self.check.holds(body, values)

    def error(self, reply: Reply, body: object, shown: str) -> ProviderError:
        """The problem this rule names, with the provider's own text and code when it has them."""
        detail = messages(self.message.find(body)) if self.message else None
        code = self.upstream_code.find(body) if self.upstream_code else MISSING
        upstream_code = (
            upstream_text(str(code), limit=64) if is_int(code) or isinstance(code, str) else None
        )
        kind, default = _KINDS[self.code]
        error = kind(
            detail or default.format(name=shown, status=reply.status),
            provider=reply.provider,
            upstream_status=reply.status,
            upstream_code=upstream_code,
        )
        if isinstance(error, UpstreamRateLimited):
            error.retry_after = retry_after_seconds(reply.headers) or 1
        return error


_KINDS: dict[str, tuple[type[ProviderError], str]] = {
    "provider_rejected": (ProviderRejected, "{name} refused the request"),
    "upstream_auth_failed": (UpstreamAuthFailed, "{name} refused the gateway's credentials"),
    "upstream_rate_limited": (UpstreamRateLimited, "{name} asked the gateway to slow down"),
    "upstream_invalid_response": (UpstreamInvalidResponse, "{name}'s answer broke its contract"),
    "upstream_error": (UpstreamError, "{name} answered HTTP {status}"),
}

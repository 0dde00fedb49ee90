"""Keeping the secrets the gateway sends upstream out of what the upstream says back.

A provider may echo a request's credentials in its error text (the password in a "wrong
password" message, the session token in a list of errors). Every error that leaves an adapter is
scrubbed in one place (`app.points.fetcher`): each secret value of the account and of the
configured providers' settings is masked, in the forms an echo may take, before the text can
reach an answer, a log line or a span.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretBytes, SecretStr

from app.errors import GatewayError

MASK = "[REDACTED]"
# Shorter values are left alone: so short a value turns up by chance in ordinary text (a
# number, a word), where masking it would garble the message and, by where the masks fall,
# spell the value out; and a secret that short (95**3 guesses) protects nothing anyway.
MIN_SECRET_CHARS = 4
# A message cut at its length limit may end with the first part of a secret; a tail this long
# that starts a secret is masked too (a shorter one is as likely to be chance).
MIN_PARTIAL_CHARS = 8
_MAX_DEPTH = 8  # nested models, and exception causes, followed this deep


def secret_values(model: BaseModel) -> list[str]:
    """Every SecretStr and SecretBytes value `model` holds, in nested models and containers too."""
    found: list[str] = []
    _collect(model, found, 0)
    return found


def _collect(value: object, found: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, SecretStr):
        found.append(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        found.append(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect(getattr(value, name, None), found, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect(item, found, depth + 1)


def _percent_lower(text: str) -> str:
    # Some encoders write percent-escapes in lowercase hex (%2f rather than %2F).
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def forms_of(value: str) -> set[str]:
    """The ways `value` may come back: as sent, JSON-escaped, URL-encoded, as passed on."""
    if len(value) < MIN_SECRET_CHARS:
        return set()
    printable = "".join(c if c.isprintable() else " " for c in value).strip()
    encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
    forms = {
        value,
        printable,  # what `upstream_text` leaves of it
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        *encoded,
        *map(_percent_lower, encoded),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class SecretScrubber:
    """Masks a fixed set of secret values, in every form `forms_of` names, in upstream text."""

    __slots__ = ("_forms",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            forms |= forms_of(value)
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def with_values(self, values: Iterable[str]) -> SecretScrubber:
        """This scrubber plus `values` (an account's secrets, for one error)."""
        extra = SecretScrubber(values)
        merged = SecretScrubber()
        merged._forms = tuple(sorted({*self._forms, *extra._forms}, key=len, reverse=True))
        return merged

    def text(self, text: str) -> str:
        """`text` with every occurrence of a secret (and a secret cut off at its end) masked."""
        spans: list[tuple[int, int]] = []
        for form in self._forms:
            at = text.find(form)
            while at != -1:
                spans.append((at, at + len(form)))
                at = text.find(form, at + 1)
            spans.extend(_cut_off_tail(text, form))
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        done = 0
        for start, end in spans:
            if end <= done:
                continue
            if start >= done:
                out.append(text[done:start])
                out.append(MASK)
            done = end
        out.append(text[done:])
        return "".join(out)

    def exception(self, error: BaseException) -> None:
        """Mask secrets in `error` in place: a gateway error's members, every exception's text.

        Its causes are scrubbed too: a traceback logged for an unexpected error prints them.
        """
        current: BaseException | None = error
        for _ in range(_MAX_DEPTH):
            if current is None:
                return
            if isinstance(current, GatewayError):
                current.detail = self.text(current.detail)
                if current.upstream_code is not None:
                    current.upstream_code = self.text(current.upstream_code)
            current.args = tuple(self.text(a) if isinstance(a, str) else a for a in current.args)
            current = current.__cause__ or current.__context__


def _cut_off_tail(text: str, form: str) -> list[tuple[int, int]]:
    """The span of a tail of `text` that is the start of `form` (the message was cut there)."""
    head = form[:MIN_PARTIAL_CHARS]
    if len(form) <= MIN_PARTIAL_CHARS:
        return []
    at = text.find(head, max(0, len(text) - len(form) + 1))
    while at != -1:
        if form.startswith(text[at:]):
            return [(at, len(text))]
        at = text.find(head, at + 1)
    return []

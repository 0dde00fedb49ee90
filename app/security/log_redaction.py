"""A logging filter that keeps secrets and line breaks out of every log record."""

from __future__ import annotations

import logging
import re

_SECRET_FIELDS = re.compile(
    r"(?i)(authorization|x-api-key|password|passwd|secret|token|imp_secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)((?:bearer\s+|basic\s+|token\s+)?[^\s'\",}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}")


def _may_hold_a_secret(text: str) -> bool:
    # Every match of the patterns above contains one of these words. On ASCII text, lowercase
    # containment is exactly the patterns' case-insensitive test, at a tenth of the cost of
    # running them (most values are ids and route names); Unicode case folding has exceptions
    # (U+017F matches "s"), so anything else goes through the patterns.
    if not text.isascii():
        return True
    low = text.lower()
    return (
        "token" in low
        or "secret" in low
        or "passw" in low
        or "bearer" in low
        or "authorization" in low
        or "x-api-key" in low
    )


def redact(text: str) -> str:
    """Mask values that follow secret-looking names, and strip CR/LF (no forged log lines)."""
    if _may_hold_a_secret(text):
        text = _SECRET_FIELDS.sub(r"\1\2[REDACTED]", text)
        text = _BEARER.sub(r"\1 [REDACTED]", text)
    return text.replace("\r", "\\r").replace("\n", "\\n")


class RedactingFilter(logging.Filter):
    """Applied to every handler: the record's message is redacted once it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True

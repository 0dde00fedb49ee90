"""A logging filter that keeps secrets and line breaks out of every log record."""

from __future__ import annotations

import logging
import re

_SECRET_FIELDS = re.compile(
    r"(?i)(authorization|x-api-key|password|passwd|secret|token|imp_secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)((?:bearer\s+|basic\s+|token\s+)?[^\s'\",}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str) -> str:
    """Mask values that follow secret-looking names, and strip CR/LF (no forged log lines)."""
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

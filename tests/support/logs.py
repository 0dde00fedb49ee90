"""What a log record holds, in every form a secret could hide in."""

from __future__ import annotations

import logging
from collections.abc import Iterator


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    """Everything a log handler could write out for `record`."""
    yield record.getMessage()
    yield str(record.msg)
    yield repr(record.args)
    yield record.exc_text or ""
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    yield record.stack_info or ""
    yield repr(vars(record))

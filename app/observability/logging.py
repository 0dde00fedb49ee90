"""Structured logs: structlog in front, stdlib logging behind, one redaction step for every line.

Every log line, the gateway's own and every library's (uvicorn, SQLAlchemy, ...), leaves through
one handler whose `ProcessorFormatter` renders it as JSON (production) or readable text (demo),
after `app.security.log_redaction.redact` has masked secret-looking values and CR/LF in every
field (a field named like a secret is masked whole). The stdlib `RedactingFilter` is not needed
on this handler: the same function runs here, on the whole event.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.security.log_redaction import redact

LogFormat = Literal["json", "console"]

# A field whose *name* says it holds a secret is masked whole, whatever its value looks like.
_SECRET_NAME = re.compile(r"(?i)authorization|api[-_]?key|password|passwd|secret|token")
_REDACTED = "[REDACTED]"
_OURS = "_points_gateway"  # marks the handler configure_logging installed
# Libraries that would log what must not be logged (httpx logs each URL: provider user ids).
QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "alembic": logging.WARNING}


# Set by the formatter itself, never from input: not worth a regex pass on every line.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})
# The gateway's own hot events (three lines a request), whose fields below hold values from
# small fixed sets (route templates, method names, provider names, outcome codes, states).
_OWN_EVENTS = frozenset({"request", "upstream_call", "balance_from_cache", "upstream_skipped"})
_FIXED_SET_FIELDS = frozenset(
    {"event", "method", "route", "provider", "outcome", "cache", "reason"}
)


def _redact_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The one redaction step: every value that will be rendered as text goes through `redact`."""
    own = event.get("event") in _OWN_EVENTS and event.get("logger", "").startswith("points_")
    for key, value in event.items():
        if value is None or isinstance(value, bool | int | float) or key in _OWN_FIELDS:
            continue  # numbers cannot carry a secret or a line break
        if own and key in _FIXED_SET_FIELDS:
            continue
        if _SECRET_NAME.search(key):
            event[key] = _REDACTED
            continue
        event[key] = redact(value if isinstance(value, str) else str(value))
    return event


_FIRST = ("timestamp", "level", "event")


def _lead_with_essentials(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """timestamp, level and event first: lines read (and grep) better."""
    ordered = {key: event.pop(key) for key in _FIRST if key in event}
    ordered.update(event)
    return ordered


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _renderer(fmt: LogFormat) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


def formatter(fmt: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of the gateway's log handler (tests put it on their own handlers too)."""
    return structlog.stdlib.ProcessorFormatter(
        # Library records: the same context (request_id) and metadata as the gateway's own.
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_fields,
            _lead_with_essentials,
            _renderer(fmt),
        ],
    )


def _configure_structlog() -> None:
    """Route structlog into stdlib logging (done once, at import, before any logger is used)."""
    structlog.configure(
        processors=[
            # First: a disabled level costs one check, not an event dict's worth of work.
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


_configure_structlog()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A module-level logger (build it once per module, never per request)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def configure_logging(
    fmt: LogFormat = "json",
    level: str = "info",
    *,
    stream: TextIO | None = None,
    force: bool = False,
) -> logging.Handler | None:
    """Send every log record (root logger) through one redacting structlog handler.

    Like `logging.basicConfig`, it leaves alone a root logger that already has someone else's
    handlers (a test runner, an application embedding the gateway) unless `force` is given; the
    gateway's own handler from an earlier call is replaced. Returns the handler it installed.
    """
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)
    root = logging.getLogger()
    if not force and any(not getattr(h, _OURS, False) for h in root.handlers):
        return None
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt))
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers: through the root handler, not uvicorn's formatters.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler


def bind_request_id(request_id: str | None) -> Mapping[str, contextvars.Token[Any]]:
    """Put the request id into the log context of the current task; returns reset tokens."""
    return structlog.contextvars.bind_contextvars(request_id=request_id)


def unbind(tokens: Mapping[str, contextvars.Token[Any]]) -> None:
    """Undo `bind_request_id`."""
    structlog.contextvars.reset_contextvars(**tokens)

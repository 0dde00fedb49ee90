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
# Drivers and client libraries stay at WARNING whatever the gateway's level: at INFO or DEBUG
# they log what must not be logged (aiosqlite each call with its parameters, sealed credentials
# included; SQLAlchemy statements and parameters; httpx each URL, with provider user ids; the
# HTTP/2 and multipart parsers header values and body parts).
QUIET_LOGGERS = dict.fromkeys(
    (
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "alembic",
        "httpx",
        "httpcore",
        "aiohttp",
        "urllib3",
        "redis",
        "hpack",
        "h2",
        "multipart",
        "python_multipart",
        "asyncio",
        "opentelemetry",
    ),
    logging.WARNING,
)


# Set by the formatter itself, never from input: not worth a regex pass on every line.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})
# The gateway's own events (the hot ones), whose fields below hold values from small fixed sets
# (route templates, method names, provider names, outcome codes, states, the gateway's own 401
# details; `providers`, the request's summary, holds only provider names, outcome codes, sources
# and numbers, and stays an object so the JSON line keeps it one).
_OWN_EVENTS = frozenset(
    {"request", "upstream_call", "balance_from_cache", "upstream_skipped", "authentication_failed"}
)
_FIXED_SET_FIELDS = frozenset(
    {"event", "method", "route", "provider", "outcome", "cache", "reason", "providers"}
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


def _render_chain(fmt: LogFormat) -> list[Processor]:
    """From an event dict to the line: timestamp, traceback, redaction, key order, rendering."""
    return [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_fields,
        _lead_with_essentials,
        _renderer(fmt),
    ]


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
            *_render_chain(fmt),
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


_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class HotLogger:
    """The logger of the lines written on every request (access, upstream attempts, cache).

    Through structlog and the stdlib a line cost about 75 µs here: two LogRecords (the
    formatter copies the first), a stack walk for the caller's file and line, which no line
    shows, and the handler machinery; three lines a request made that a tenth of a request's
    CPU. When the gateway's own handler is the only one the record would reach (as in
    production), the line is rendered by that handler's own chain (`_render_chain`: the same
    timestamp, redaction, key order and renderer) and written under the handler's lock, in
    about a fifth of the time. Otherwise (a test's capture handler, an embedding application's
    handlers, a filter anywhere) it takes the full structlog and stdlib path.
    """

    __slots__ = ("_logger", "_name", "_slow")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger = logging.getLogger(name)
        self._slow = get_logger(name)

    def enabled_for(self, level: int) -> bool:
        """Whether a line at `level` would be written (to skip building its fields when not)."""
        return self._logger.isEnabledFor(level)

    def log(self, level: int, event: str, **fields: object) -> None:
        """One line of `event` with `fields` (and the request id bound in this context)."""
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        handler = _sole_gateway_handler(logger, level)
        if handler is None:
            self._slow.log(level, event, **fields)
            return
        line: Any = {**fields, "event": event}
        for key, value in structlog.contextvars.get_contextvars().items():
            line.setdefault(key, value)
        line["logger"] = self._name
        line["level"] = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
        method = line["level"]
        for processor in getattr(handler, _CHAIN):
            line = processor(logger, method, line)
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        finally:
            handler.release()


_CHAIN = "_points_gateway_chain"  # the render chain of a handler configure_logging installed


def _sole_gateway_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[Any] | None:
    """The gateway's handler, when a record of `level` would reach it and nothing else."""
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or level < handler.level or handler.filters:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or not hasattr(found, _CHAIN):
        return None
    assert isinstance(found, logging.StreamHandler)
    return found


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
    setattr(handler, _CHAIN, _render_chain(fmt))
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

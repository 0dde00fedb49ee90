"""Building the async database engine: SQLite (embedded default) or PostgreSQL, same code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.accounts.sqlite_files import prepare_sqlite_file
from app.errors import ConfigurationError


def _sqlite_pragmas(timeout: float) -> Callable[[Any, object], None]:
    def apply(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed during a write; busy_timeout makes concurrent writers queue,
        # and gives up (database is locked) within the store's own timeout.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return apply


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (not `:memory:`, not a `file:` URI), else None."""
    try:
        parsed = make_url(url)
    except Exception:  # build_engine says what is wrong with the URL
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def build_engine(
    url: str, *, timeout: float, pg_schema: str | None = None, reader: bool = False
) -> AsyncEngine:
    """An engine for `url` (sqlite+aiosqlite or postgresql+asyncpg; `pg_schema` isolates tests).

    A `reader` engine serves SQLite's per-request lookups (PostgreSQL's run on asyncpg, see
    `app.accounts.lookups`): autocommit, so no BEGIN/ROLLBACK around a single SELECT, and no
    reset when a connection goes back to the pool.
    """
    tuning: dict[str, Any] = (
        {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None} if reader else {}
    )
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError, or ValueError for bad ports
        raise ConfigurationError("POINTS_DATABASE_URL is not a database URL") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # A `file:` URI (uri=true) names its own options: SQLite alone opens it.
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
            prepare_sqlite_file(Path(parsed.database), report=not reader)
        engine = create_async_engine(
            parsed, pool_timeout=timeout, connect_args={"timeout": timeout}, **tuning
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            parsed = parsed.set(drivername="postgresql+asyncpg")
        return create_async_engine(
            parsed,
            pool_size=10,
            max_overflow=10,
            pool_timeout=timeout,
            pool_pre_ping=True,
            connect_args={
                "timeout": timeout,
                "command_timeout": timeout,
                # Named in pg_stat_activity, beside the lookups' "points-gateway lookups".
                "server_settings": {
                    "application_name": "points-gateway",
                    **({"search_path": pg_schema} if pg_schema else {}),
                },
            },
        )
    raise ConfigurationError(
        f"POINTS_DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)"
    )

"""Account-store fixtures: every store test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.accounts.engine import build_engine
from app.accounts.lookups import Lookups, open_lookups
from app.accounts.migrate import upgrade
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.cli import main
from app.providers.registry import BUILTIN_PLUGINS
from app.settings import get_settings
from tests.conftest import require_services

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
KEY_A = Keyring.generate_entry("key-a")
KEY_B = Keyring.generate_entry("key-b")
PLUGINS = {p.name: p for p in BUILTIN_PLUGINS}


async def _postgres_available() -> str | None:
    probe = create_async_engine(PG_URL, connect_args={"timeout": 3})
    try:
        async with probe.connect() as conn:
            await conn.execute(text("select 1"))
        return None
    except Exception as exc:  # any failure to connect means "not here"
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable ({type(exc).__name__})"
    finally:
        await probe.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database of each backend (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/accounts.db"
        db = build_engine(url, timeout=5.0)
        _LOOKUPS[db] = open_lookups(url, timeout=5.0)
        await upgrade(db)
        yield db
        await db.dispose()
        await _LOOKUPS.pop(db).aclose()
        return
    async with pg_schema() as schema:
        db = build_engine(PG_URL, timeout=5.0, pg_schema=schema)
        _LOOKUPS[db] = open_lookups(PG_URL, timeout=5.0, pg_schema=schema)
        try:
            await upgrade(db)
            yield db
        finally:
            await db.dispose()
            await _LOOKUPS.pop(db).aclose()


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """An empty schema of its own on the real PostgreSQL, dropped after (or skip, or fail)."""
    reason = await _postgres_available()
    if reason is not None:
        if require_services():
            pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


StoreFactory = Callable[..., SqlAccountStore]
# The per-request lookup path beside each database's engine, as the gateway builds them.
_LOOKUPS: dict[AsyncEngine, Lookups] = {}


@pytest.fixture
def make_sql_store(engine: AsyncEngine) -> StoreFactory:
    """Build a store on the fixture's database with the given keyring entries (default key A)."""

    def build(*keys: str, timeout: float = 5.0) -> SqlAccountStore:
        keyring = Keyring.parse(",".join(keys or (KEY_A,)))
        return SqlAccountStore(engine, keyring, PLUGINS, timeout=timeout, lookups=_LOOKUPS[engine])

    return build


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean POINTS_* environment: a SQLite file in tmp_path, key A, both providers."""
    for name in list(os.environ):
        if name.upper().startswith("POINTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    values = {
        "POINTS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "POINTS_SECRET_KEYS": KEY_A,
        "POINTS_ENABLED_PROVIDERS": "benepia,gafapay",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


@pytest.fixture
def cli(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """Run `points-gateway ARGS` in process with extra env; returns (exit code, out, err)."""

    def run(*args: str, **overrides: str) -> tuple[int, str, str]:
        for name, value in overrides.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        except Exception as exc:
            pytest.fail(
                f"`points-gateway {' '.join(args)}` raised {type(exc).__name__} "
                "(the operator gets a traceback instead of a message)"
            )
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run

"""At POINTS_LOG_LEVEL=debug the gateway's own lines get chatty, its libraries' do not.

Database drivers log each statement's parameters at DEBUG (aiosqlite: every call with its
arguments), which would put the sealed credential blobs in the logs; HTTP clients log URLs and
headers. They stay at WARNING whatever the gateway's level.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from app.accounts.engine import build_engine
from app.accounts.migrate import upgrade
from app.accounts.sealing import Keyring
from app.main import create_app
from app.observability.logging import QUIET_LOGGERS, configure_logging
from tests.conftest import (
    BENEPIA_URL,
    SECRETS,
    TOKEN_URL,
    benepia_ok,
    make_settings,
    serve_in_process,
    token_ok,
)

PASSWORD = "debug-level-benepia-password-0042"
DRIVERS = ("sqlalchemy", "aiosqlite", "asyncpg", "httpx", "httpcore", "aiohttp", "redis")


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """configure_logging at debug into a buffer; the root logger and library levels restored."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = {*QUIET_LOGGERS, *DRIVERS}
    levels = {name: logging.getLogger(name).level for name in names}
    configure_logging("json", "debug", stream=stream, force=True)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def test_libraries_stay_at_warning_whatever_the_level(debug_logs: io.StringIO) -> None:
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    for name in (*DRIVERS, "sqlalchemy.engine", "aiosqlite", "asyncpg.pool", "urllib3"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("points_gateway.fetcher").isEnabledFor(logging.DEBUG)


async def test_linking_through_sqlite_at_debug_logs_no_sealed_blob_or_secret(
    debug_logs: io.StringIO, tmp_path: Path, upstream: respx.MockRouter
) -> None:
    database = tmp_path / "gw.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = build_engine(url, timeout=5.0)
    await upgrade(engine)
    await engine.dispose()
    settings = make_settings(
        database_url=url,
        secret_keys=Keyring.generate_entry("debug-key"),
        cache={"ttl": 60, "stale_if_error": 0},  # the second read is a cache hit: a DEBUG line
    )
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    app = create_app(settings, transport=httpx.MockTransport(upstream.async_handler))

    async with serve_in_process(app) as client:
        account = {"benepia_user": "alice.kim", "benepia_password": PASSWORD}
        linked = await client.put("/users/alice/accounts/benepia", json=account)
        points = await client.get("/users/alice/points/benepia")
        cached = await client.get("/users/alice/points/benepia")
        listed = await client.get("/users/alice/accounts")

    assert linked.status_code == 201, linked.text
    assert points.status_code == 200, points.text
    assert cached.json()["cached"] is True
    assert listed.status_code == 200, listed.text
    with sqlite3.connect(database) as db:
        (sealed,) = db.execute("select sealed from linked_accounts").fetchone()
    text = debug_logs.getvalue()
    assert '"level":"debug","event":"balance_from_cache"' in text, "the gateway's own DEBUG lines"
    blob = sealed.rsplit(".", 2)[-2]  # v1.<key id>.<nonce>.<ciphertext>: not the header
    assert blob[:16] not in text
    for secret in (PASSWORD, *SECRETS):
        assert secret not in text

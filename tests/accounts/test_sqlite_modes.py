"""The SQLite store is private: directory 0700, database (and its -wal, -shm) 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.accounts.engine import build_engine
from app.cli import main
from app.settings import get_settings
from tests.accounts.conftest import KEY_A

DB_NAME = "points-gateway.db"  # the default file in POINTS_DATA_DIR


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022 umask, under which SQLite alone would create 0644 and mkdir 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A POINTS_* environment whose data directory (not yet created) is tmp_path/var/data."""
    for name in list(os.environ):
        if name.upper().startswith("POINTS_"):
            monkeypatch.delenv(name)
    data = tmp_path / "var" / "data"
    monkeypatch.setenv("POINTS_DATA_DIR", str(data))
    monkeypatch.setenv("POINTS_SECRET_KEYS", KEY_A)
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_db_upgrade_on_a_fresh_data_dir_creates_it_private(
    data_env: Path, usual_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0, capsys.readouterr().err

    assert mode(data_env) == 0o700
    assert mode(data_env / DB_NAME) == 0o600


async def test_the_wal_and_shm_files_are_as_private_as_the_database(
    tmp_path: Path, usual_umask: None
) -> None:
    database = tmp_path / "data" / DB_NAME
    engine = build_engine(f"sqlite+aiosqlite:///{database}", timeout=5.0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("create table t (x integer)"))
            await conn.execute(text("insert into t values (1)"))
            wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
            assert wal.exists(), "WAL mode keeps it while connected"
            assert shm.exists(), "WAL mode keeps it while connected"
            assert (mode(database), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        await engine.dispose()


async def test_an_existing_directory_is_left_alone_and_a_loose_file_reported(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    loose = shared / DB_NAME
    loose.touch()
    loose.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="points_gateway.store")

    engine = build_engine(f"sqlite+aiosqlite:///{loose}", timeout=5.0)
    await engine.dispose()

    assert mode(shared) == 0o750
    assert mode(loose) == 0o644, "an operator's file is reported, not changed"
    (record,) = [r for r in caplog.records if r.name == "points_gateway.store"]
    assert "chmod 600" in record.getMessage()
    assert "0644" in record.getMessage()


async def test_a_private_existing_file_is_not_reported(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / DB_NAME
    caplog.set_level(logging.WARNING, logger="points_gateway.store")
    for _ in range(2):  # created, then found as it was left
        await build_engine(f"sqlite+aiosqlite:///{database}", timeout=5.0).dispose()

    assert mode(database) == 0o600
    assert not [r for r in caplog.records if r.name == "points_gateway.store"]


def test_a_database_that_cannot_be_created_is_one_line_exit_2(
    data_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_env.parent.write_text("a file where the data directory's parent should be")

    code = main(["db", "upgrade"])

    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "cannot create the SQLite database" in err

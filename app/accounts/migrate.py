"""Applying the Alembic migrations to the configured database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What `upgrade` did: the revision before (None: no schema yet) and after."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        """One line for the operator."""
        if self.before is None:
            return f"created the account schema (revision {self.after})"
        if self.before == self.after:
            return f"the account schema is already up to date (revision {self.after})"
        return f"upgraded the account schema from revision {self.before} to {self.after}"


async def upgrade(engine: AsyncEngine, revision: str = "head") -> Upgrade:
    """Bring the schema up to `revision` in one transaction."""

    def run(connection: Connection) -> Upgrade:
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_config(connection), revision)
        return Upgrade(before, MigrationContext.configure(connection).get_current_revision())

    async with engine.begin() as conn:
        return await conn.run_sync(run)


SchemaState = Literal["missing", "behind", "current"]


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Whether `db upgrade` has run, and up to the latest migration."""

    def check(connection: Connection) -> SchemaState:
        if not inspect(connection).has_table("linked_accounts"):
            return "missing"
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_config(connection)).get_current_head()
        return "current" if current == head else "behind"

    async with engine.connect() as conn:
        return await conn.run_sync(check)


def schema_problem(state: SchemaState) -> str | None:
    """What to tell an operator about the schema, or None when it is current."""
    if state == "missing":
        return "the account store has no schema yet: run `points-gateway db upgrade`"
    if state == "behind":
        return (
            "the account store's schema is older than this release: run `points-gateway db upgrade`"
        )
    return None

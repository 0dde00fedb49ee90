"""Alembic environment: migrations run on the connection `points-gateway db upgrade` provides."""

from __future__ import annotations

from alembic import context

from app.accounts.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `points-gateway db upgrade`")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()

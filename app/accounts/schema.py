"""The linked-accounts table (Alembic migrations in app/accounts/migrations create it)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

metadata = MetaData()

linked_accounts = Table(
    "linked_accounts",
    metadata,
    # One row per (user, provider): the primary key is what makes concurrent links collapse.
    Column("user_id", String(128), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("masked_id", String(128), nullable=False),
    Column("sealed", Text, nullable=False),
    Column("key_id", String(32), nullable=False, index=True),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_fetch_at", DateTime(timezone=True), nullable=True),
    # What proved the account the caller's when it was linked (app/accounts/ownership.py);
    # NULL for rows linked before the gateway checked.
    Column("ownership", String(16), nullable=True),
)

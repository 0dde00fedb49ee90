"""Notify every replica when a linked account changes (PostgreSQL only).

A trigger on `linked_accounts` sends `pg_notify('points_account_changes', ...)` for every insert,
delete, and update of what a lookup reads (the sealed credentials, the ownership): every writer is
covered, the gateway's routes, `accounts import`, `keys rotate` and a hand-written UPDATE alike.
Fetch notes (`last_fetch_at`) notify nobody. The payload is `<provider> <user_id> <epoch seconds>
`<kind>` (the time the change was made, for the replicas' lag metric; `resealed` when `keys
rotate` set `points.change` for its transaction, else `changed`); it is delivered on commit.

SQLite has no notifications: the gateway keeps no account cache there
(app/accounts/account_cache.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNEL = "points_account_changes"

_FUNCTION = f"""
CREATE OR REPLACE FUNCTION points_notify_account_change() RETURNS trigger AS $$
DECLARE
    at text := extract(epoch FROM clock_timestamp())::text || ' '
        || coalesce(nullif(current_setting('points.change', true), ''), 'changed');
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pg_notify('{CHANNEL}', OLD.provider || ' ' || OLD.user_id || ' ' || at);
    END IF;
    IF TG_OP = 'INSERT' OR (
        TG_OP = 'UPDATE'
        AND (OLD.user_id, OLD.provider) IS DISTINCT FROM (NEW.user_id, NEW.provider)
    ) THEN
        PERFORM pg_notify('{CHANNEL}', NEW.provider || ' ' || NEW.user_id || ' ' || at);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER points_account_inserted_or_deleted AFTER INSERT OR DELETE "
        "ON linked_accounts FOR EACH ROW EXECUTE FUNCTION points_notify_account_change()"
    )
    op.execute(
        "CREATE TRIGGER points_account_updated AFTER UPDATE ON linked_accounts FOR EACH ROW "
        "WHEN (OLD.sealed IS DISTINCT FROM NEW.sealed "
        "OR OLD.ownership IS DISTINCT FROM NEW.ownership "
        "OR OLD.user_id IS DISTINCT FROM NEW.user_id "
        "OR OLD.provider IS DISTINCT FROM NEW.provider) "
        "EXECUTE FUNCTION points_notify_account_change()"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS points_account_updated ON linked_accounts")
    op.execute("DROP TRIGGER IF EXISTS points_account_inserted_or_deleted ON linked_accounts")
    op.execute("DROP FUNCTION IF EXISTS points_notify_account_change()")

"""Send no change notification for a key rotation's re-seal (PostgreSQL only).

`keys rotate` replaces each row's sealed text with the same credentials under the current key and
says so with `SET LOCAL points.change = 'resealed'`. A replica caches the opened account, never the
sealed text, so a re-seal changes nothing it serves; yet migration 0003 notified every replica of
every row (a million rows: a million notifications to each, each one emptying that user's cached
accounts). From here the trigger stays silent for them; every other write notifies as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANNEL = "points_account_changes"


def _function(resealed: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION points_notify_account_change() RETURNS trigger AS $$
DECLARE
    kind text := coalesce(nullif(current_setting('points.change', true), ''), 'changed');
    at text := extract(epoch FROM clock_timestamp())::text || ' ' || kind;
BEGIN
    {resealed}
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


# Only an UPDATE that keeps the row's identity: a rotation never inserts, deletes or moves rows.
_SILENT = """IF TG_OP = 'UPDATE' AND kind = 'resealed'
        AND (OLD.user_id, OLD.provider) IS NOT DISTINCT FROM (NEW.user_id, NEW.provider) THEN
        RETURN NULL;
    END IF;"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(_function(_SILENT))


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(_function(""))

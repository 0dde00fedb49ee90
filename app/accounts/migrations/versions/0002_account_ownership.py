"""Record what proved each linked account the caller's.

Rows linked before this revision keep NULL: they are checked again on every read
(app/accounts/ownership.py, `admit_unrecorded`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("linked_accounts", sa.Column("ownership", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("linked_accounts") as batch:
        batch.drop_column("ownership")

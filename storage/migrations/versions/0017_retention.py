"""retention: a case's legal hold and when it was redacted; when a message lost its text;
when a person was erased

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("legal_hold", sa.Boolean(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("redacted_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.drop_column("erased_at")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("purged_at")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("redacted_at")
        batch.drop_column("legal_hold")

"""a reporter who chooses to be named may leave a name and phone with the case

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("reporter_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("reporter_phone", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("reporter_phone")
        batch.drop_column("reporter_name")

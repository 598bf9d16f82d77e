"""web chat: what the bot said to each web visitor, a school's public report page, and the
follow-up code of a report made there

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("visitor", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_web_messages_visitor", "web_messages", ["visitor", "id"])
    op.create_index("ix_web_messages_created_at", "web_messages", ["created_at"])
    with op.batch_alter_table("schools") as batch:
        batch.add_column(sa.Column("public_reports", sa.Boolean(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("followup_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("followup_hash")
    with op.batch_alter_table("schools") as batch:
        batch.drop_column("public_reports")
    op.drop_index("ix_web_messages_created_at", "web_messages")
    op.drop_index("ix_web_messages_visitor", "web_messages")
    op.drop_table("web_messages")

"""outbox: look up an account's queued messages without walking its history

Every claim asks of each candidate whether an earlier message to the same chat is still
queued. Through the account_id index that walked every message the account was ever sent,
and on PostgreSQL, before its statistics caught up with a burst, the planner intersected it
with the status index and scanned every queued row for each candidate (a claim took 100 ms
with 3,000 answers queued). One index on account, status, priority and id answers it from the
account's queued rows alone, and serves everything the account_id index did.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_account_queue", "outbox",
                    ["account_id", "status", "priority", "id"])
    op.drop_index("ix_outbox_account_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_account_id", "outbox", ["account_id"])
    op.drop_index("ix_outbox_account_queue", table_name="outbox")

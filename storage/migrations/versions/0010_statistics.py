"""statistics: escalation and school confirmation on the case, report requests, indexes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("confirmation", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("confirmation_asked_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_incidents_received", [
            "created_at", "area_id", "category", "urgent", "anonymous", "school_id",
            "acknowledged_at", "escalated_at"], unique=False)
        batch_op.create_index("ix_incidents_closed", [
            "closed_at", "area_id", "outcome", "resolution_due_at", "confirmation",
            "confirmation_asked_at"], unique=False)
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.create_index("ix_incident_events_kind_at", ["kind", "at"], unique=False)
    op.create_index("ix_outbox_outreach", "outbox",
                    ["sent_at", "area_id", "account_id", "campaign_run_id"],
                    unique=False, sqlite_where=sa.text("campaign_run_id IS NOT NULL"),
                    postgresql_where=sa.text("campaign_run_id IS NOT NULL"))
    # Cases that escalated before this revision: the first escalation on their timeline.
    op.execute(
        "UPDATE incidents SET escalated_at = (SELECT min(e.at) FROM incident_events e "
        "WHERE e.incident_id = incidents.id AND e.kind = 'escalated')")
    op.create_table(
        "stat_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("period_kind", sa.String(length=16), nullable=False),
        sa.Column("period_label", sa.String(length=32), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"],
                                name=op.f("fk_stat_reports_person_id_people")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_stat_reports_account_id_accounts")),
        sa.ForeignKeyConstraint(["area_id"], ["areas.id"],
                                name=op.f("fk_stat_reports_area_id_areas")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_reports")),
        sa.UniqueConstraint("key", name=op.f("uq_stat_reports_key")),
        sa.UniqueConstraint("token", name=op.f("uq_stat_reports_token")),
    )
    with op.batch_alter_table("stat_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stat_reports_person_id"), ["person_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_stat_reports_status"), ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("stat_reports")
    op.drop_index("ix_outbox_outreach", table_name="outbox")
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_events_kind_at")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_closed")
        batch_op.drop_index("ix_incidents_received")
        batch_op.drop_column("confirmation_asked_at")
        batch_op.drop_column("confirmation")
        batch_op.drop_column("escalated_at")
